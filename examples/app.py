"""An ordinary program: it knows nothing about vlhook."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("shop.checkout")


def worker(n: int) -> None:
    for step in range(2):
        print(f"worker {n}: step {step} done")
        time.sleep(0.01)


def main() -> None:
    print("checkout service starting")
    log.info("cart priced", extra={"cart_id": "c-1042", "items": 3, "total_eur": 59.9})
    print(json.dumps({"message": "payment authorised", "level": "info", "psp": "acme", "ms": 182}))
    try:
        {"eur": 1.0}["usd"]
    except KeyError:
        log.exception("currency conversion failed", extra={"currency": "usd"})
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("WARNING: stock low for sku-77", file=sys.stderr)
    sys.stdout.write("shutting down (no newline at the end)")


if __name__ == "__main__":
    main()
