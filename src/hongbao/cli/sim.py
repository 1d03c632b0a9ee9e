"""`hongbao sim …`: serve the simulator, and drive a running one through its control API.

`serve` runs the simulator over mutual TLS; every other command is a thin wrapper over one
`/__sim/` call (see `hongbao.sim.control`), made with httpx trusting the simulator's CA.

>>> # hongbao sim serve --port 0 --data ./sim            (prints the URL, then the CA file)
>>> # hongbao sim merchant create --url URL --data ./sim --json
>>> # hongbao sim merchant create --sim URL --data ./sim --name shop --config hongbao.toml
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from hongbao.cli.boundary import FastHelpGroup
from hongbao.cli.output import print_fields, print_json, print_table
from hongbao.clock import SystemClock
from hongbao.defaults import SIM_PORT
from hongbao.errors import ConfigurationError

if TYPE_CHECKING:
    from hongbao.cli.configfile import SavedFiles

__all__ = ["sim_app"]

sim_app = typer.Typer(
    name="sim",
    help="Run the WeChat Pay red packet simulator and drive it (merchants, users, clock, faults).",
    no_args_is_help=True,
    cls=FastHelpGroup,
)
merchant_app = typer.Typer(
    help="Create, show and change simulated merchants.", no_args_is_help=True, cls=FastHelpGroup
)
user_app = typer.Typer(
    help="Create and block simulated users (openids).", no_args_is_help=True, cls=FastHelpGroup
)
sim_app.add_typer(merchant_app, name="merchant")
sim_app.add_typer(user_app, name="user")

DEFAULT_URL = f"https://127.0.0.1:{SIM_PORT}"
_TIMEOUT_SECONDS = 10.0
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", "--sim", envvar="HONGBAO_SIM_URL", help="Base URL of the running simulator."
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        envvar="HONGBAO_SIM_CA",
        help="The simulator's CA certificate (its DIR/ca.pem, or the file `serve` printed).",
        dir_okay=False,
    ),
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        envvar="HONGBAO_SIM_DATA",
        help="The simulator's data directory: its ca.pem is trusted (instead of --ca).",
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the simulator's JSON answer.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="NAME=VALUE",
        help="Any merchant setting of the control API; VALUE is JSON (e.g. per_user_count=50, "
        'scenes={"PRODUCT_1":[30,499900]}) or else a plain string. Repeatable.',
    ),
]


class _Control:
    """The control API of one running simulator."""

    def __init__(self, url: str, ca: Path | None, data: Path | None) -> None:
        ca_file = ca if ca is not None else (data / "ca.pem" if data is not None else None)
        if ca_file is None:
            _fail("the simulator's CA is needed: --ca FILE (or HONGBAO_SIM_CA), or --data DIR")
        if not ca_file.is_file():
            _fail(f"no CA certificate at {ca_file}")
        self.url = url.rstrip("/")
        self.ca_file = ca_file
        self.verify = ssl.create_default_context(cafile=str(ca_file))

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One control request; exits with the simulator's message when it refuses."""
        import httpx

        try:
            response = httpx.request(
                method,
                self.url + path,
                json=body,
                params=params,
                verify=self.verify,
                timeout=_TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the simulator at {self.url}: {exc}")
        try:
            answer = response.json()
        except ValueError:
            _fail(f"the simulator answered HTTP {response.status_code} without JSON")
        if response.is_error:
            _fail(f"the simulator refused (HTTP {response.status_code}): {answer.get('error')}")
        return answer


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _report(answer: Any, as_json: bool) -> None:
    """A control call's answer: JSON with `--json`; otherwise `name  value` lines, and a table
    for each list of records (the armed faults)."""
    if as_json:
        print_json(answer)
        return
    if not isinstance(answer, dict):
        typer.echo(_plain(answer))
        return
    fields = []
    for name, value in answer.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            header = list(dict.fromkeys(key for item in value for key in item))
            print_table(name, header, [[_plain(item.get(k)) for k in header] for item in value])
        else:
            fields.append((name, _plain(value)))
    if fields:
        print_fields("", fields)


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def _settings(pairs: list[str] | None) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            _fail(f"--set needs NAME=VALUE, got {pair!r}")
        try:
            settings[name] = json.loads(raw)
        except ValueError:
            settings[name] = raw
    return settings


# --- serve ----------------------------------------------------------------------------------


@sim_app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = SIM_PORT,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Directory for the state (SQLite) and the CA; without it all lives in memory.",
            file_okay=False,
        ),
    ] = None,
    wall_clock: Annotated[
        bool,
        typer.Option(
            "--wall-clock/--frozen-clock",
            help="The clock the simulator runs on. --wall-clock (the default): the FREQ_LIMIT "
            "window, daily limits and the 24 h refunds follow real time, as at WeChat. "
            "--frozen-clock: its own clock, which stands still until `hongbao sim clock` moves "
            "it (scripted tests of refunds and daily limits; note that the FREQ_LIMIT window "
            "then never slides either).",
        ),
    ] = True,
) -> None:
    """Serve the simulator over HTTPS with client certificates (stop with Ctrl-C).

    Once listening it prints two lines: the base URL, then the CA certificate file clients must
    trust (DIR/ca.pem, or a temporary file when the state lives in memory).
    """
    from hongbao.sim.app import Simulator
    from hongbao.sim.server import serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sim = Simulator(clock=SystemClock() if wall_clock else None, data_dir=data)

    def announce(url: str, ca_file: Path) -> None:
        typer.echo(url)
        typer.echo(str(ca_file.resolve()))

    try:
        serve(sim, host, port, on_started=announce)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    finally:
        sim.close()


# --- merchants and users --------------------------------------------------------------------


@merchant_app.command("create")
def merchant_create(
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    mch_id: Annotated[str | None, typer.Option(help="The mch_id (default: a new one).")] = None,
    balance_fen: Annotated[int | None, typer.Option(help="Opening balance, in fen.")] = None,
    ip_whitelist: Annotated[
        list[str] | None,
        typer.Option("--ip", help="A caller IP allowed to send (repeatable; none = any)."),
    ] = None,
    wecom: Annotated[
        bool,
        typer.Option(
            help="Also give it a WeCom corp (corpid and 企业支付 secret; saved with --config)."
        ),
    ] = False,
    settings: SetOption = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Write the merchant into this configuration file as [merchants.NAME] (created "
            "or updated; other content kept), its key and certificate into files beside it.",
            dir_okay=False,
        ),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="The merchant's name in the configuration file.")
    ] = "sim",
    as_json: JsonOption = False,
) -> None:
    """Create a merchant with its API key, appids and API certificate.

    With `--config FILE`, the merchant is saved for the other commands: its API key goes into
    NAME.api_key, its certificate into NAME.apiclient_cert.pem + NAME.apiclient_key.pem (key
    files readable by you only), all next to FILE, and [merchants.NAME] points at them, at the
    simulator (base_url) and at its CA (ca_bundle). Example:

        hongbao sim merchant create --sim URL --data ./sim --name shop --config hongbao.toml

    `--json` prints everything, the API key and the certificate's private key included: they are
    the simulator's test credentials, which a client needs to call it.
    """
    if config is not None and not _NAME.fullmatch(name):
        _fail(f"--name {name!r}: use letters, digits, '-' and '_' only")
    body = _settings(settings)
    if mch_id is not None:
        body["mch_id"] = mch_id
    if balance_fen is not None:
        body["balance_fen"] = balance_fen
    if ip_whitelist:
        body["ip_whitelist"] = ip_whitelist
    if wecom:
        body["wecom"] = True
    control = _Control(url, ca, data)
    created = control.call("POST", "/__sim/merchants", body)
    saved = None if config is None else _save(config, name, created, control)
    if as_json:
        print_json(created)
        return
    typer.echo(f"mch_id      {created['mch_id']}")
    for kind in ("appid", "mini_appid", "app_appid", "wecom_corpid"):
        if kind in created:
            typer.echo(f"{kind:<11} {created[kind]}")
    if saved is None:
        typer.echo("(API key and certificate: run with --json, or save them with --config)")
        return
    typer.echo(f"saved as [merchants.{name}] in {saved.config}")
    typer.echo(f"  api_key_file {saved.api_key}")
    typer.echo(f"  cert_pem     {saved.cert_pem}")
    typer.echo(f"  key_pem      {saved.key_pem}")
    if saved.wecom_secret is not None:
        typer.echo(f"  wecom_secret_file {saved.wecom_secret}")


def _save(config: Path, name: str, created: dict[str, Any], control: _Control) -> SavedFiles:
    from hongbao.cli.configfile import SimMerchant, save_merchant

    merchant = SimMerchant(
        mch_id=created["mch_id"],
        appid=created["appid"],
        mini_appid=created["mini_appid"],
        base_url=control.url,
        ca_bundle=control.ca_file,
        api_key=created["api_key"],
        cert_pem=created["cert_pem"].encode("ascii"),
        key_pem=created["key_pem"].encode("ascii"),
        wecom_corpid=created.get("wecom_corpid"),
        wecom_secret=created.get("wecom_secret"),
    )
    try:
        return save_merchant(config, name, merchant)
    except (ConfigurationError, OSError) as exc:
        _fail(f"merchant {created['mch_id']} was created, but saving it failed: {exc}")


@merchant_app.command("show")
def merchant_show(
    mch_id: Annotated[str, typer.Argument(help="The merchant's mch_id.")],
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a merchant's settings, balance and appids (JSON, no key)."""
    _report(_Control(url, ca, data).call("GET", f"/__sim/merchants/{mch_id}"), as_json)


@merchant_app.command("update")
def merchant_update(
    mch_id: Annotated[str, typer.Argument(help="The merchant's mch_id.")],
    settings: SetOption = None,
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a merchant's settings (`--set NAME=VALUE`) and show the result."""
    body = _settings(settings)
    if not body:
        _fail("nothing to change: give at least one --set NAME=VALUE")
    _report(_Control(url, ca, data).call("PATCH", f"/__sim/merchants/{mch_id}", body), as_json)


@user_app.command("create")
def user_create(
    appid: Annotated[str, typer.Option(help="The appid the users belong to.")],
    count: Annotated[int, typer.Option(help="How many new users.")] = 1,
    openids: Annotated[
        list[str] | None, typer.Option("--openid", help="Register this openid (repeatable).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create users under an appid; prints their openids, one a line."""
    body: dict[str, Any] = {"appid": appid, "count": 0 if openids else count}
    if openids:
        body["openids"] = openids
    created = _Control(url, ca, data).call("POST", "/__sim/users", body)
    if as_json:
        print_json(created)
    else:
        typer.echo("\n".join(created["openids"]))


@user_app.command("block")
def user_block(
    openid: Annotated[str, typer.Argument(help="The user's openid.")],
    unblock: Annotated[bool, typer.Option("--unblock", help="Lift the block instead.")] = False,
    appid: Annotated[str | None, typer.Option(help="Only under this appid.")] = None,
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Flag a user as risky (sends to it fail with NO_AUTH), or lift the flag."""
    body: dict[str, Any] = {"blocked": not unblock}
    if appid is not None:
        body["appid"] = appid
    _report(_Control(url, ca, data).call("PATCH", f"/__sim/users/{openid}", body), as_json)


# --- packets, time, faults, ledger --------------------------------------------------------------


@sim_app.command("open")
def open_packet(
    mch_id: Annotated[str, typer.Option(help="The sending merchant.")],
    bill: Annotated[str, typer.Option("--bill", help="The packet's mch_billno.")],
    openid: Annotated[
        str | None, typer.Option(help="Who opens it (fission: a friend of the seed user).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open a sent packet as the user would (RECEIVED once all its money is claimed)."""
    body: dict[str, Any] = {"mch_id": mch_id, "mch_billno": bill}
    if openid is not None:
        body["openid"] = openid
    _report(_Control(url, ca, data).call("POST", "/__sim/open", body), as_json)


@sim_app.command("clock")
def clock(
    advance: Annotated[
        float | None, typer.Option(help="Move forward by this many seconds.", min=0)
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(help="Jump to this ISO 8601 time (no offset = Beijing time)."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the simulator's time, or move it forward and run what fell due (refunds, …)."""
    if advance is not None and now is not None:
        _fail("give --advance or --now, not both")
    control = _Control(url, ca, data)
    if advance is None and now is None:
        _report(control.call("GET", "/__sim/clock"), as_json)
    else:
        body = {"advance_seconds": advance} if advance is not None else {"now": now}
        _report(control.call("POST", "/__sim/clock", body), as_json)


@sim_app.command("fault")
def fault(
    action: Annotated[
        str | None,
        typer.Argument(
            help="Arm a fault: error, http_status, delay, hang, pay_then_drop or processing. "
            "Without it, list the armed faults."
        ),
    ] = None,
    endpoint: Annotated[
        str,
        typer.Option(
            help="sendredpack, sendgroupredpack, sendminiprogramhb, gethbinfo, sendworkwxredpack, "
            "queryworkwxredpack or *."
        ),
    ] = "*",
    err_code: Annotated[str | None, typer.Option(help="For error: the err_code.")] = None,
    status: Annotated[int | None, typer.Option(help="For http_status: the status.")] = None,
    seconds: Annotated[
        float | None, typer.Option(help="For delay, hang, processing: how long.")
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="Fire this many times (default: until cleared).")
    ] = None,
    probability: Annotated[float | None, typer.Option(help="Fire with this probability.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the probability draws.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Disarm every fault.")] = False,
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Arm a fault on the API endpoints, list the armed ones, or clear them."""
    control = _Control(url, ca, data)
    if clear:
        if action is not None:
            _fail("give an action or --clear, not both")
        _report(control.call("DELETE", "/__sim/faults"), as_json)
        return
    if action is None:
        _report(control.call("GET", "/__sim/faults"), as_json)
        return
    options = {
        "err_code": err_code,
        "status": status,
        "seconds": seconds,
        "count": count,
        "probability": probability,
        "seed": seed,
    }
    body: dict[str, Any] = {"endpoint": endpoint, "action": action}
    body.update({name: value for name, value in options.items() if value is not None})
    _report(control.call("POST", "/__sim/faults", body), as_json)


@sim_app.command("ledger")
def ledger(
    mch_id: Annotated[str, typer.Option(help="The merchant.")],
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """What the merchant really sent and paid: balance and every record with its status."""
    answer = _Control(url, ca, data).call("GET", "/__sim/ledger", params={"mch_id": mch_id})
    if as_json:
        print_json(answer)
        return
    typer.echo(f"balance_fen {answer['balance_fen']}")
    for row in answer["records"]:
        typer.echo(
            f"{row['mch_billno']}  {row['api']:<17} {row['status']:<9} "
            f"{row['total_amount']:>8}  {row['re_openid']}  {row['send_time']}"
        )


@sim_app.command("reset")
def reset(
    url: UrlOption = DEFAULT_URL,
    ca: CaOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Forget every merchant, user, record and fault (the CA stays)."""
    _report(_Control(url, ca, data).call("POST", "/__sim/reset"), as_json)
