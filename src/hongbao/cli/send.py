"""`hongbao send | send-group | send-mini | send-workwx | query`: one red packet at a time.

A send is a payout on demand in the ledger (`hongbao.engine.ondemand`): recorded under an
idempotency key (`--key`, or a new one) before anything leaves, its key and bill number printed
(stderr) first. Running the same command again with the same `--key` is safe: it prints the
same payout, resolving it first if its outcome was unknown — never a second packet.
`--bill-no` sends outside the ledger with the bare client, to resend a packet that was sent
outside the ledger: if its outcome is unknown (exit code 4), query it or resend it with that
bill number; never under a new one.

>>> # hongbao send --merchant shop --openid oXYZ --amount 1.00 --send-name Acme \\
>>> #     --act-name Spring --wishing "Thank you" --remark "Enjoy"
>>> # hongbao query 1900000109202403150000000001 --json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao.cli.boundary import ExitCode, Guard, guard
from hongbao.cli.options import (
    AmountOption,
    ConfigOption,
    JsonOption,
    MerchantOption,
    load,
    open_ledger,
    yuan,
)
from hongbao.cli.output import note, print_fields, print_json, print_table
from hongbao.cli.payouts import payout_document
from hongbao.defaults import DEFAULT_PAY_TIMEOUT as DEFAULT_TIMEOUT
from hongbao.errors import ConfigurationError
from hongbao.ids import BillNoError, new_nonce, validate_bill_no
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.api import Merchant, RedpackInfo, SendResult
    from hongbao.engine.ondemand import Kind, PayoutView

__all__ = [
    "query_command",
    "send_command",
    "send_group_command",
    "send_mini_command",
    "send_workwx_command",
]

OpenidOption = Annotated[
    str, typer.Option("--openid", help="The receiver's openid under the merchant's appid.")
]
SendNameOption = Annotated[
    str, typer.Option("--send-name", help="Sender name shown to the user (send_name).")
]
ActNameOption = Annotated[str, typer.Option("--act-name", help="Activity name (act_name).")]
WishingOption = Annotated[str, typer.Option("--wishing", help="Blessing text (wishing).")]
RemarkOption = Annotated[str, typer.Option("--remark", help="Remark (remark).")]
SceneOption = Annotated[
    str | None,
    typer.Option(
        "--scene-id",
        help="PRODUCT_1 … PRODUCT_8; required outside 1–200 yuan (per share for send-group).",
        show_default=False,
    ),
]
BillOption = Annotated[
    str | None,
    typer.Option(
        "--bill-no",
        help="Send outside the ledger with this bill number (mch_billno, ≤ 28 letters/digits): "
        "to resend a packet sent outside the ledger whose outcome was unknown.",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="Idempotency key (≤ 64 printable ASCII characters, e.g. order-8812:cashback): "
        "the same command with the same key never pays twice. Default: a new one, printed "
        "before sending.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", min=0, help="Seconds to wait for the outcome; past them exit 4 (unknown)."
    ),
]


def send_command(
    openid: OpenidOption,
    amount: AmountOption,
    send_name: SendNameOption,
    act_name: ActNameOption,
    wishing: WishingOption,
    remark: RemarkOption,
    scene_id: SceneOption = None,
    key: KeyOption = None,
    bill_no: BillOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one normal red packet (sendredpack), recorded in the ledger under an idempotency key.

    Exit codes: 0 sent; 3 not sent (refused, rejected, or deferred: see the message); 4
    UNKNOWN, the money may have been sent: run the same command with the printed --key (it
    resolves the same bill, never pays twice). Example:

        hongbao send --openid oXYZ --amount 1.00 --key order-8812:cashback \
            --send-name Acme --act-name Spring --wishing 'Thank you' --remark Enjoy
    """
    packet = _Packet("normal", openid, yuan(amount), 1, send_name, wishing, act_name, remark)
    _send(packet, scene_id, key, bill_no, timeout, merchant, config, as_json)


def send_group_command(
    openid: Annotated[
        str, typer.Option("--openid", help="The seed user, who shares the rest with friends.")
    ],
    amount: Annotated[
        str, typer.Option("--amount", metavar="YUAN", help="Total of all shares, in yuan.")
    ],
    total_num: Annotated[int, typer.Option("--total-num", help="Number of shares (3–20).", min=1)],
    send_name: SendNameOption,
    act_name: ActNameOption,
    wishing: WishingOption,
    remark: RemarkOption,
    scene_id: SceneOption = None,
    key: KeyOption = None,
    bill_no: BillOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one fission red packet: the amount split at random into shares (sendgroupredpack).

    Exit codes and --key as for `send`. Example:

        hongbao send-group --openid oXYZ --amount 3.00 --total-num 3 --send-name Acme \
            --act-name Spring --wishing 'Share it' --remark Enjoy
    """
    packet = _Packet("group", openid, yuan(amount), total_num, send_name, wishing, act_name, remark)
    _send(packet, scene_id, key, bill_no, timeout, merchant, config, as_json)


def send_mini_command(
    openid: Annotated[
        str, typer.Option("--openid", help="The receiver's openid under the mini program.")
    ],
    amount: AmountOption,
    send_name: SendNameOption,
    act_name: ActNameOption,
    wishing: WishingOption,
    remark: RemarkOption,
    scene_id: SceneOption = None,
    key: KeyOption = None,
    bill_no: BillOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one mini-program red packet (sendminiprogramhb); prints its `package`.

    The user opens it in the mini program with `wx.sendBizRedPacket`, whose signed parameters
    `hongbao.api.jsapi.jsapi_params(package, …)` computes on your server. Exit codes and --key
    as for `send`. Example:

        hongbao send-mini --openid oMini --amount 1.00 --send-name Acme \
            --act-name Spring --wishing 'Thank you' --remark Enjoy
    """
    packet = _Packet("mini", openid, yuan(amount), 1, send_name, wishing, act_name, remark)
    _send(packet, scene_id, key, bill_no, timeout, merchant, config, as_json)


def send_workwx_command(
    openid: Annotated[
        str,
        typer.Option(
            "--openid", help="The member's openid under the corp (WeCom userid → openid)."
        ),
    ],
    amount: AmountOption,
    act_name: ActNameOption,
    wishing: WishingOption,
    remark: RemarkOption,
    sender_name: Annotated[
        str | None,
        typer.Option(
            "--sender-name",
            help="Send in a person's name (sender_name, ≤ 128 characters); or --agentid.",
            show_default=False,
        ),
    ] = None,
    agentid: Annotated[
        int | None,
        typer.Option(
            "--agentid", help="Send in the name of this WeCom app (agentid).", show_default=False
        ),
    ] = None,
    sender_header_media_id: Annotated[
        str | None,
        typer.Option(
            "--sender-header-media-id",
            help="The sender's avatar, a WeCom media id (with --sender-name).",
            show_default=False,
        ),
    ] = None,
    scene_id: SceneOption = None,
    key: KeyOption = None,
    bill_no: BillOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one WeCom (企业微信) red packet to a member of the merchant's corp
    (sendworkwxredpack); the merchant needs wecom_corpid and wecom_secret_file.

    Exactly one of --sender-name and --agentid. Exit codes and --key as for `send`. Example:

        hongbao send-workwx --openid oMember --amount 8.88 --sender-name 'HR Team' \
            --act-name 'Year-end party' --wishing 'Thank you!' --remark 'Happy new year'
    """
    packet = _Packet(
        "workwx",
        openid,
        yuan(amount),
        1,
        None,
        wishing,
        act_name,
        remark,
        sender_name=sender_name,
        agentid=agentid,
        sender_header_media_id=sender_header_media_id,
    )
    _send(packet, scene_id, key, bill_no, timeout, merchant, config, as_json)


@dataclass(frozen=True)
class _Packet:
    kind: Kind
    openid: str
    amount_fen: int
    total_num: int
    send_name: str | None
    wishing: str
    act_name: str
    remark: str
    sender_name: str | None = None
    agentid: int | None = None
    sender_header_media_id: str | None = None


def _send(
    packet: _Packet,
    scene_id: str | None,
    key: str | None,
    bill_no: str | None,
    timeout: float,
    merchant: str | None,
    config: Path | None,
    as_json: bool,
) -> None:
    if key is not None and bill_no is not None:
        raise typer.BadParameter(
            "--bill-no sends outside the ledger, where --key means nothing: give one of them",
            param_hint="--key",
        )
    if bill_no is not None:
        _send_bare(packet, scene_id, bill_no, merchant, config, as_json)
        return
    from hongbao.engine.ondemand import AsyncPayouts, check_key
    from hongbao.eventloop import run

    with guard(as_json) as state:
        chosen = load(config)
        profile = chosen.profile(merchant)
        if packet.kind == "mini" and profile.merchant.mini_appid is None:
            raise ConfigurationError("send-mini needs mini_appid in the merchant's configuration")
        key = check_key(key) if key is not None else f"cli-{new_nonce(20)}"
        store = open_ledger(chosen.ledger_url, create=True)

        def recorded(view: PayoutView) -> None:
            state.mch_billno = view.bill_no
            # Printed before the request leaves: a crash or timeout later still leaves the key.
            note(f"key {key}")
            note(f"mch_billno {view.bill_no}")

        async def pay() -> tuple[PayoutView, str | None]:
            async with AsyncPayouts(store, profile) as payouts:
                view = await payouts.pay(
                    key,
                    packet.openid,
                    packet.amount_fen,
                    kind=packet.kind,
                    total_num=packet.total_num,
                    send_name=packet.send_name,
                    wishing=packet.wishing,
                    act_name=packet.act_name,
                    remark=packet.remark,
                    scene_id=scene_id,
                    sender_name=packet.sender_name,
                    agentid=packet.agentid,
                    sender_header_media_id=packet.sender_header_media_id,
                    timeout=timeout,
                    on_recorded=recorded,
                )
                return view, await payouts.package(view) if packet.kind == "mini" else None

        try:
            view, package = run(pay())
        finally:
            store.close()
    _report_payout(view, package, as_json)


def _send_bare(
    packet: _Packet,
    scene_id: str | None,
    bill_no: str,
    merchant: str | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Send with the bare client under a caller's bill number, recording nothing."""
    from hongbao.api import Client

    with guard(as_json) as state:
        chosen, bill = _prepare(config, merchant, bill_no, state, mini=packet.kind == "mini")
        common: dict[str, Any] = {
            "mch_billno": bill,
            "re_openid": packet.openid,
            "total_amount": packet.amount_fen,
            "wishing": packet.wishing,
            "act_name": packet.act_name,
            "remark": packet.remark,
            "scene_id": scene_id,
        }
        with Client(chosen) as client:
            if packet.kind == "workwx":
                result: SendResult = client.send_workwx_redpack(
                    sender_name=packet.sender_name,
                    agentid=packet.agentid,
                    sender_header_media_id=packet.sender_header_media_id,
                    **common,
                )
            elif packet.kind == "group":
                result = client.send_group_redpack(
                    total_num=packet.total_num, send_name=packet.send_name or "", **common
                )
            elif packet.kind == "mini":
                result = client.send_miniprogram_redpack(send_name=packet.send_name or "", **common)
            else:
                result = client.send_redpack(send_name=packet.send_name or "", **common)
    _report_sent(result, bill, packet.amount_fen, as_json)


def query_command(
    bill_no: Annotated[str, typer.Argument(help="The packet's bill number (mch_billno).")],
    workwx: Annotated[
        bool,
        typer.Option("--workwx", help="A WeCom packet: ask queryworkwxredpack with the corpid."),
    ] = False,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask WeChat what became of a bill number (gethbinfo; --workwx: queryworkwxredpack).

    Not found is not a failure: a send may still be in progress; ask again later. An error
    here concerns the query only, never whether the packet was issued. Example:

        hongbao query 1900000109202403150000000001 --json
    """
    from hongbao.api import Client

    with guard(as_json, asks="query") as state:
        state.mch_billno = bill_no
        chosen = load(config).merchant(merchant)
        with Client(chosen) as client:
            info = client.query_workwx_redpack(bill_no) if workwx else client.query_redpack(bill_no)
    _report_info(info, as_json)


def _prepare(
    config: Path | None, name: str | None, bill_no: str, state: Guard, *, mini: bool = False
) -> tuple[Merchant, str]:
    chosen = load(config).merchant(name)
    if mini and chosen.mini_appid is None:
        raise ConfigurationError("send-mini needs mini_appid in the merchant's configuration")
    try:
        bill = validate_bill_no(bill_no)
    except BillNoError as exc:
        raise typer.BadParameter(str(exc), param_hint="--bill-no") from None
    state.mch_billno = bill
    # Printed before the request leaves: a crash or timeout later still leaves the user the key.
    note(f"mch_billno {bill}")
    return chosen, bill


def _report_payout(view: PayoutView, package: str | None, as_json: bool) -> None:
    """The outcome of a payout on demand; exits 3 (not sent) or 4 (unknown) unless sent."""
    document = payout_document(view)
    if package is not None:
        document["package"] = package
    if view.outcome == "sent":
        if as_json:
            print_json(document)
            return
        rows: list[tuple[str, object]] = [
            ("key", view.key),
            ("mch_billno", view.bill_no),
            ("to", view.openid),
            ("amount", f"{format_yuan(view.amount_fen)} yuan"),
            ("send_listid", view.send_listid),
        ]
        if package is not None:
            rows.append(("package", package))
        print_fields("Sent", rows)
        return
    problem = f"[{view.err_code}] {view.err_code_des or ''}".strip() if view.err_code else None
    rerun = f"run the same command with --key {view.key}"
    if view.outcome == "unknown":
        code, label = ExitCode.UNKNOWN, "OUTCOME UNKNOWN"
        message = f"payout {view.key} is {view.state.value}" + (f": {problem}" if problem else "")
        advice = (
            f"The money may have been sent. Find out with `hongbao query {view.bill_no}`, or "
            f"{rerun}: it resolves the same bill number and never pays twice."
        )
        outcome = "unknown"
    else:
        code, label = ExitCode.REFUSED, "not sent"
        message = problem or view.reason or view.state.value
        if view.outcome == "pending":
            when = view.next_attempt_at.isoformat() if view.next_attempt_at else "later"
            advice = (
                f"The payout is kept under key {view.key} and may go from {when}: fix the "
                f"cause, then {rerun}, or `hongbao payouts run`."
            )
        else:
            advice = f"Payout {view.key} is {view.state.value}; a new packet needs a new key."
        error_outcome = view.error_outcome
        outcome = error_outcome.value if error_outcome is not None else "not_sent"
    typer.echo(f"{label}: {message}", err=True)
    typer.echo(advice, err=True)
    if as_json:
        print_json(
            {
                **document,
                "error": message,
                "outcome": outcome,
                "exit_code": int(code),
            }
        )
    raise typer.Exit(int(code))


def _report_sent(result: SendResult, bill: str, total: int, as_json: bool) -> None:
    document: dict[str, Any] = {
        "outcome": "sent",
        "mch_billno": bill,
        "mch_id": result.mch_id,
        "re_openid": result.re_openid,
        "total_amount_fen": result.total_amount if result.total_amount is not None else total,
        "send_listid": result.send_listid,
    }
    if result.package is not None:
        document["package"] = result.package
    if as_json:
        print_json(document)
        return
    rows: list[tuple[str, object]] = [
        ("mch_billno", bill),
        ("to", result.re_openid),
        ("amount", f"{format_yuan(document['total_amount_fen'])} yuan"),
        ("send_listid", result.send_listid),
    ]
    if result.package is not None:
        rows.append(("package", result.package))
    print_fields("Sent", rows)


def _report_info(info: RedpackInfo, as_json: bool) -> None:
    if as_json:
        print_json(_info_document(info))
        return
    if not info.found:
        print_fields(
            "Not found",
            [("mch_billno", info.mch_billno), ("status", "NOT FOUND (may still be processing)")],
        )
        return
    rows: list[tuple[str, object]] = [
        ("mch_billno", info.mch_billno),
        ("status", info.status.value if info.status else "?"),
        ("amount", _yuan_or_dash(info.total_amount)),
        ("shares", info.total_num if info.total_num is not None else "-"),
        ("sent", info.send_time or "-"),
    ]
    if info.reason:
        rows.append(("reason", info.reason))
    if info.refund_amount is not None:
        rows.append(("refunded", f"{_yuan_or_dash(info.refund_amount)} at {info.refund_time}"))
    print_fields("Red packet", rows)
    if info.receipts:
        print_table(
            "Received",
            ["openid", "amount", "time"],
            [(r.openid, format_yuan(r.amount), r.rcv_time or "-") for r in info.receipts],
        )


def _info_document(info: RedpackInfo) -> dict[str, Any]:
    return {
        "found": info.found,
        "mch_billno": info.mch_billno,
        "status": info.status.value if info.status else None,
        "total_amount_fen": info.total_amount,
        "total_num": info.total_num,
        "reason": info.reason,
        "send_time": info.send_time.isoformat() if info.send_time else None,
        "refund_time": info.refund_time.isoformat() if info.refund_time else None,
        "refund_amount_fen": info.refund_amount,
        "receipts": [
            {
                "openid": r.openid,
                "amount_fen": r.amount,
                "rcv_time": r.rcv_time.isoformat() if r.rcv_time else None,
            }
            for r in info.receipts
        ],
    }


def _yuan_or_dash(fen: int | None) -> str:
    return "-" if fen is None else f"{format_yuan(fen)} yuan"
