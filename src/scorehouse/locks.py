"""Locks on files: one ingest per raw table, one feature build, one scoring, one publish at
once, and one commit per table.

Delta's optimistic commits do not stop two appends of the same rows (both succeed), so
steps that read a table and then commit to it hold a lock for the whole read-decide-commit.
A lock is an flock on a file: the kernel releases it when the holder dies (SIGKILL
included), so a crashed run never leaves a stale lock behind. flock locks belong to the
open file description, so two threads holding separate descriptors exclude each other as
two processes do. A step's holder writes its pid and start time into the file so that a
waiter can say who it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from scorehouse.errors import ConflictError
from scorehouse.settings import Settings
from scorehouse.storage.location import warehouse_root

log = logging.getLogger(__name__)

POLL_S = 0.1
# A nightly step takes minutes: a second run waits for the first rather than failing, and
# then finds its work done (the step ledger skips it).
WAIT_S = 3600.0


def lock_path(settings: Settings, name: str) -> Path:
    return warehouse_root(settings.warehouse) / "_locks" / f"{name}.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def file_lock(path: Path, what: str, wait_s: float, poll_s: float = POLL_S) -> Iterator[IO[str]]:
    """Hold an exclusive flock on `path` while the block runs; wait up to `wait_s` for a
    holder, then raise ConflictError naming `what` and the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(path, "a+") as handle:
        announced = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    raise ConflictError(
                        f"{what} is already running ({holder}); waited {wait_s:.0f} s. "
                        "Run it again once that run has finished."
                    ) from None
                if not announced:
                    log.warning("%s is already running (%s); waiting for it", what, holder)
                    announced = True
                time.sleep(poll_s)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def work_lock(settings: Settings, name: str, what: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the step lock `name` under `<warehouse>/_locks/` while the block runs."""
    with file_lock(lock_path(settings, name), what, wait_s) as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
