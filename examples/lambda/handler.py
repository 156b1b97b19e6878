"""A sample Lambda function that knows nothing about vlhook: prints, logs, threads, JSON, errors.

The event chooses what it does: {"name": ..., "fail": true, "threads": 2, "json": true}.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

logger = logging.getLogger("orders")
logger.setLevel(logging.INFO)
print("init: loading configuration")  # written during init: no request id


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    name = event.get("name", "world")
    print(f"hello {name}")
    logger.info("processing order", extra={"order_id": event.get("order_id", 0)})
    if event.get("json"):
        print(json.dumps({"message": "payment captured", "level": "INFO", "amount": 12.5}))
    workers = [
        threading.Thread(target=lambda n=n: print(f"{name} worker {n}"))
        for n in range(event.get("threads", 0))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if event.get("fail"):
        raise ValueError(f"cannot process {name}")
    return {"ok": True, "name": name}
