"""`hongbao send | send-group | send-mini | query`: one red packet at a time.

Each send needs a bill number, the packet's idempotency key. Without `--bill-no` one is minted
and printed (stderr) BEFORE the request leaves: if the outcome is unknown (exit code 4), query
it or resend it with that bill number; never under a new one.

>>> # hongbao send --merchant shop --openid oXYZ --amount 1.00 --send-name Acme \\
>>> #     --act-name Spring --wishing "Thank you" --remark "Enjoy"
>>> # hongbao query 1900000109202403150000000001 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao.cli.boundary import Guard, guard
from hongbao.cli.options import AmountOption, ConfigOption, JsonOption, MerchantOption, load, yuan
from hongbao.cli.output import note, print_fields, print_json, print_table
from hongbao.clock import SystemClock
from hongbao.errors import ConfigurationError
from hongbao.ids import BillNoError, mint_bill_no, validate_bill_no
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.api import Merchant, RedpackInfo, SendResult

__all__ = ["query_command", "send_command", "send_group_command", "send_mini_command"]

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
        help="The bill number (mch_billno, ≤ 28 letters/digits). Reuse it to resend a packet "
        "whose outcome was unknown. Default: a new one, printed before sending.",
        show_default=False,
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
    bill_no: BillOption = None,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one normal red packet (sendredpack).

    Exit codes: 0 sent; 3 not sent (refused or rejected); 4 UNKNOWN, the money may have been
    sent: query or resend with the printed bill number. Example:

        hongbao send --openid oXYZ --amount 1.00 --send-name Acme \\
            --act-name Spring --wishing 'Thank you' --remark Enjoy
    """
    from hongbao.api import Client

    total = yuan(amount)
    with guard(as_json) as state:
        chosen, bill = _prepare(config, merchant, bill_no, state)
        with Client(chosen) as client:
            result = client.send_redpack(
                mch_billno=bill,
                re_openid=openid,
                total_amount=total,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
            )
    _report_sent(result, bill, total, as_json)


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
    bill_no: BillOption = None,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one fission red packet: the amount split at random into shares (sendgroupredpack).

    Exit codes as for `send`. Example:

        hongbao send-group --openid oXYZ --amount 3.00 --total-num 3 --send-name Acme \\
            --act-name Spring --wishing 'Share it' --remark Enjoy
    """
    from hongbao.api import Client

    total = yuan(amount)
    with guard(as_json) as state:
        chosen, bill = _prepare(config, merchant, bill_no, state)
        with Client(chosen) as client:
            result = client.send_group_redpack(
                mch_billno=bill,
                re_openid=openid,
                total_amount=total,
                total_num=total_num,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
            )
    _report_sent(result, bill, total, as_json)


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
    bill_no: BillOption = None,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one mini-program red packet (sendminiprogramhb); prints its `package`.

    The user opens it in the mini program with `wx.sendBizRedPacket`, whose signed parameters
    `hongbao.api.jsapi.jsapi_params(package, …)` computes on your server. Exit codes as for
    `send`. Example:

        hongbao send-mini --openid oMini --amount 1.00 --send-name Acme \\
            --act-name Spring --wishing 'Thank you' --remark Enjoy
    """
    from hongbao.api import Client

    total = yuan(amount)
    with guard(as_json) as state:
        chosen, bill = _prepare(config, merchant, bill_no, state, mini=True)
        with Client(chosen) as client:
            result = client.send_miniprogram_redpack(
                mch_billno=bill,
                re_openid=openid,
                total_amount=total,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
            )
    _report_sent(result, bill, total, as_json)


def query_command(
    bill_no: Annotated[str, typer.Argument(help="The packet's bill number (mch_billno).")],
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask WeChat what became of a bill number (gethbinfo).

    Not found is not a failure: a send may still be in progress; ask again later. An error
    here concerns the query only, never whether the packet was issued. Example:

        hongbao query 1900000109202403150000000001 --json
    """
    from hongbao.api import Client

    with guard(as_json) as state:
        state.mch_billno = bill_no
        chosen = load(config).merchant(merchant)
        with Client(chosen) as client:
            info = client.query_redpack(bill_no)
    _report_info(info, as_json)


def _prepare(
    config: Path | None, name: str | None, bill_no: str | None, state: Guard, *, mini: bool = False
) -> tuple[Merchant, str]:
    chosen = load(config).merchant(name)
    if mini and chosen.mini_appid is None:
        raise ConfigurationError("send-mini needs mini_appid in the merchant's configuration")
    try:
        bill = (
            validate_bill_no(bill_no)
            if bill_no is not None
            else mint_bill_no(chosen.mch_id, SystemClock().now())
        )
    except BillNoError as exc:
        raise typer.BadParameter(str(exc), param_hint="--bill-no") from None
    state.mch_billno = bill
    # Printed before the request leaves: a crash or timeout later still leaves the user the key.
    note(f"mch_billno {bill}")
    return chosen, bill


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
