"""Callers of `AsyncPayouts.pay` in their own process, for the tests to race and `kill -9`.

    python -m tests.engine.ondemand_caller CONFIG.json

CONFIG holds what `tests.engine.chaos_runner.profile_from` takes (the merchant, the served
simulator), the ledger URL, `payments` as [key, openid, amount_fen] rows, `callers` (tasks
paying them side by side, each in its own order) and `timeout` (of each `pay`). Each caller
pays every row, so callers race on every key. Prints, per key, the states the calls returned.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from hongbao import eventloop
from hongbao.engine.ondemand import AsyncPayouts
from tests.engine.chaos_runner import CHAOS_RUN, profile_from

PACKET: dict[str, Any] = {
    "send_name": "天虹百货",
    "wishing": "谢谢惠顾",
    "act_name": "好评返现",
    "remark": "谢谢",
}


async def _main(config: dict[str, Any]) -> dict[str, list[str]]:
    payments = [tuple(row) for row in config["payments"]]
    seen: dict[str, list[str]] = {str(key): [] for key, _, _ in payments}
    async with AsyncPayouts(config["ledger_url"], profile_from(config), settings=CHAOS_RUN) as p:

        async def caller(n: int) -> None:
            order = list(payments)
            random.Random(config.get("seed", 0) + n).shuffle(order)
            for key, openid, amount in order:
                view = await p.pay(
                    str(key), str(openid), int(amount), timeout=config["timeout"], **PACKET
                )
                seen[view.key].append(view.state.value)

        await asyncio.gather(*(caller(n) for n in range(config["callers"])))
    return seen


def main(argv: list[str]) -> int:
    """Pay the rows of the JSON file `argv[0]`; print the states seen per key."""
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(json.dumps(eventloop.run(_main(config))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
