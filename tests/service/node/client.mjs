// A merchant's Node backend driving `hongbao serve`: built-in fetch (Node 18+), no npm packages.
//
// It first listens for webhooks on a loopback port and prints {"step": "listening", "url"}; then
// it reads one JSON line on stdin ({"base", "token", "secret", "openids"}), drives the API and
// prints one JSON line per step for the test (tests/service/test_node_client.py) to check.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { createInterface } from "node:readline";

const PACKET = { send_name: "天虹百货", wishing: "感谢您的好评", act_name: "好评返现", remark: "谢谢" };
const deliveries = [];

function say(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

// Verify a delivery the way docs/http-api.md shows: HMAC-SHA256(secret, `${t}.${rawBody}`),
// compared in constant time, and the timestamp no more than 300 s off.
function verify(rawBody, header, secret, tolerance = 300) {
  const pairs = (header ?? "").split(",").map((part) => part.trim().split("="));
  const t = Number(pairs.find(([name]) => name === "t")?.[1]);
  const given = pairs.filter(([name]) => name === "v1").map(([, hex]) => Buffer.from(hex, "hex"));
  if (!Number.isInteger(t) || given.length === 0) return false;
  const expected = createHmac("sha256", secret).update(`${t}.`).update(rawBody).digest();
  const matches = given.some(
    (v1) => v1.length === expected.length && timingSafeEqual(v1, expected),
  );
  return matches && Math.abs(Date.now() / 1000 - t) <= tolerance;
}

const receiver = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    deliveries.push({ body: Buffer.concat(chunks), header: request.headers["hongbao-signature"] });
    response.writeHead(204).end();
  });
});
await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
say("listening", { url: `http://127.0.0.1:${receiver.address().port}/hooks` });

const lines = createInterface({ input: process.stdin });
const setup = JSON.parse((await lines[Symbol.asyncIterator]().next()).value);
lines.close();
const { base, token, secret, openids } = setup;

async function call(method, path, { key, body } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (key !== undefined) headers["Idempotency-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, json: await response.json() };
}

const order = { openid: openids[0], amount_fen: 188, ...PACKET, metadata: { order: "A-1" } };
const created = await call("POST", "/v1/payouts", { key: "node-order-1", body: order });
say("create", { status: created.status, id: created.json.id, key: created.json.key,
                state: created.json.state, metadata: created.json.metadata });

const replayed = await call("POST", "/v1/payouts", { key: "node-order-1", body: order });
say("replay", { status: replayed.status, id: replayed.json.id,
                replayed: replayed.headers.get("idempotent-replayed") });

const conflict = await call("POST", "/v1/payouts", {
  key: "node-order-1", body: { ...order, amount_fen: 288 },
});
say("conflict", { status: conflict.status, content_type: conflict.headers.get("content-type"),
                  type: conflict.json.type, fields: conflict.json.fields });

for (const [index, openid] of openids.slice(1, -1).entries()) {
  const more = await call("POST", "/v1/payouts", {
    key: `node-order-${index + 2}`, body: { ...order, openid, metadata: {} },
  });
  if (more.status !== 201) throw new Error(`node-order-${index + 2}: ${more.status}`);
}
const listed = [];
const pages = [];
let cursor = null;
do {
  const query = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
  const page = await call("GET", `/v1/payouts?limit=2${query}`);
  pages.push(page.json.data.length);
  listed.push(...page.json.data.map((payout) => payout.key));
  cursor = page.json.next_cursor;
} while (cursor !== null);
say("list", { pages, keys: listed });

const waited = await call("POST", "/v1/payouts?wait=5", {
  key: "node-order-wait", body: { ...order, openid: openids.at(-1), metadata: {} },
});
say("wait", { status: waited.status, state: waited.json.state, settled: waited.json.settled,
              sent_at: waited.json.sent_at });

const fetched = await call("GET", `/v1/payouts/${created.json.id}`);
say("get", { status: fetched.status, key: fetched.json.key, state: fetched.json.state });

// The first payout's payout.sent event, as it reached this receiver.
const deadline = Date.now() + 20_000;
let delivery;
while (delivery === undefined && Date.now() < deadline) {
  delivery = deliveries.find((each) => {
    const event = JSON.parse(each.body.toString("utf8"));
    return event.type === "payout.sent" && event.data.id === created.json.id;
  });
  if (delivery === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
}
receiver.close();
if (delivery === undefined) {
  throw new Error(`no payout.sent event among ${deliveries.length} deliveries`);
}
const text = delivery.body.toString("utf8");
const event = JSON.parse(text);
const tampered = Buffer.from(text.replace(/("amount_fen": ?)188/, "$1888"));
say("webhook", {
  id: event.id,
  type: event.type,
  payout_key: event.data.key,
  verified: verify(delivery.body, delivery.header, secret),
  tampered_verified: verify(tampered, delivery.header, secret),
  tampered_differs: !tampered.equals(delivery.body),
  wrong_secret_verified: verify(delivery.body, delivery.header, secret + "x"),
});
