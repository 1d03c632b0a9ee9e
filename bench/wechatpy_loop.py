"""wechatpy 1.8.18's `redpack.send` in a loop, as a process of its own: bench/campaign.py's (d).

Imports nothing but wechatpy and the standard library, so that the process's CPU time is
wechatpy's own: start-up, the TLS handshake and every send. The job (the simulator's URL and
CA, the merchant's credentials and certificate files, the openids and the bill numbers to send)
comes as a JSON file; every answer must be SUCCESS, or the process exits non-zero.

Run: `python bench/wechatpy_loop.py JOB.json` (bench/campaign.py writes the file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from wechatpy.pay import WeChatPay

    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    pay = WeChatPay(
        appid=job["appid"],
        api_key=job["api_key"],
        mch_id=job["mch_id"],
        mch_cert=job["cert_path"],
        mch_key=job["key_path"],
        timeout=10,
    )
    # As in bench/campaign.py's `wechatpy_client`: aimed at the simulator, trusting its CA.
    pay.API_BASE_URL = job["url"] + "/"
    pay._http.trust_env = False
    pay._http.verify = job["ca_path"]
    content = job["content"]
    for openid, bill in zip(job["openids"], job["bills"], strict=True):
        answer = pay.redpack.send(
            openid, 100, client_ip=job["client_ip"], out_trade_no=bill, **content
        )
        if answer.get("result_code") != "SUCCESS":
            raise SystemExit(f"wechatpy: unexpected answer {answer}")


if __name__ == "__main__":
    main()
