"""Killing a real redis-server in the middle of a publish (the fault tests' shared part)."""

from __future__ import annotations

import os
import signal
import threading
import time

from scorehouse.localstack import RedisServer

# About two seconds of loading for a few thousand scores: time to kill in the middle.
SLOW_LOAD = {"SCOREHOUSE_REDIS__MAX_KEYS_PER_SECOND": "3000"}


def kill_mid_load(server: RedisServer, ns: str = "sh") -> threading.Thread:
    """A started thread that SIGKILLs `server` once a second generation has some buckets."""
    client = server.client()
    pid = server.pid
    assert pid is not None

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if client.zcard(f"{ns}:generations") == 2 and len(client.keys(f"{ns}:*:s:*")) > 30:
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread
