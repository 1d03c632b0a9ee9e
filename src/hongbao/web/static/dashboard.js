// hongbao dashboard: confirmations, live progress, charts. No inline script: the page's CSP
// allows scripts from this site only, and chart data comes in <script type="application/json">.
"use strict";

// Ask before a form with data-confirm posts (pause, resume, cancel).
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
});

// Live progress: poll the element's data-live-url and replace the figures it names.
function applyLive(doc) {
  const row = document.querySelector(`[data-campaign="${doc.id}"]`);
  if (!row) {
    return;
  }
  Object.entries(doc.fields).forEach(([name, text]) => {
    row.querySelectorAll(`[data-field="${name}"]`).forEach((el) => {
      el.textContent = text;
    });
  });
  row.querySelectorAll("progress[data-live-progress]").forEach((bar) => {
    bar.max = doc.total;
    bar.value = doc.settled;
  });
}

function poll(container) {
  const url = container.dataset.liveUrl;
  const every = Number(document.body.dataset.pollMs) || 2000;
  const single = container.hasAttribute("data-campaign");
  const shownState = single ? container.querySelector('[data-field="state"]').textContent : null;
  const tick = async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) {
        return;
      }
      const body = await response.json();
      const docs = body.campaigns || [body];
      docs.forEach(applyLive);
      if (single && body.state !== shownState) {
        window.location.reload(); // new state, new actions
        return;
      }
      if (docs.some((doc) => !doc.finished)) {
        window.setTimeout(tick, every);
      }
    } catch (error) {
      window.setTimeout(tick, every * 5);
    }
  };
  window.setTimeout(tick, every);
}

document.querySelectorAll("[data-live-url]").forEach(poll);

// Charts (Chart.js, served from /static): one per canvas[data-chart="<json element id>"].
const COLOURS = ["#c0392b", "#2c3e50", "#27ae60", "#8e44ad"];
document.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
  if (typeof window.Chart === "undefined") {
    return;
  }
  const data = JSON.parse(document.getElementById(canvas.dataset.chart).textContent);
  data.datasets.forEach((set, i) => {
    const colour = COLOURS[i % COLOURS.length];
    set.borderColor = colour;
    set.backgroundColor = set.type === "bar" ? `${colour}99` : colour;
    set.pointRadius = data.labels.length < 3 ? 3 : 0; // a lone point must still show
    if (set.label.startsWith("merchant cap")) {
      set.borderDash = [6, 4];
    }
  });
  new window.Chart(canvas, {
    data,
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true } },
    },
  });
});
