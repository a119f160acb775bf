"""Progress and step logging for long CLI steps.

Every step logs its duration and the row counts it reports; while it runs, a rich
progress bar follows the Spark tasks of the process's active SparkContext (the
session may be created inside the step). The bar is drawn only when stderr is a
terminal, so logs, pipes and Prefect runs get the log lines alone.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

log = logging.getLogger("scorehouse.step")


@dataclass
class StepReport:
    """What a step did: filled in by the step (`rows`), timed by `step`."""

    name: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v:,} rows" for k, v in self.rows.items())
        return f"{self.name}: {counts + ' ' if counts else ''}in {self.seconds:.1f} s"


_current: StepReport | None = None


def record_rows(label: str, count: int) -> None:
    """Add a row count to the running step's report (no-op outside a step)."""
    if _current is not None:
        _current.rows[label] = int(count)


def spark_task_counts() -> tuple[int, int, int] | None:
    """(completed, total) tasks of the active Spark stages and the stages seen so far,
    or None when no SparkContext runs in this process."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None:
        return None
    tracker = sc.statusTracker()
    done = total = 0
    stages = tracker.getActiveStageIds()
    for stage_id in stages:
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            done += info.numCompletedTasks
            total += info.numTasks
    return done, total, len(stages)


class _SparkBar(threading.Thread):
    """Redraws a rich bar from the Spark status tracker until stopped."""

    def __init__(self, name: str, stream: TextIO, every_s: float = 0.5) -> None:
        super().__init__(daemon=True, name=f"progress-{name}")
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.every_s = every_s
        self._stop_event = threading.Event()
        self._moved: list[tuple[logging.Handler, Any]] = []
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stages]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self.task = self.progress.add_task(name, total=None, stages="")

    def start(self) -> None:
        # Rich swaps sys.stderr for a proxy that prints above the bar; log handlers that
        # hold the real stderr are pointed at it too, so log lines do not cut the bar.
        self.progress.start()
        for handler in logging.getLogger().handlers:
            stream = getattr(handler, "stream", None)
            if stream is sys.__stderr__ and sys.stderr is not stream:
                self._moved.append((handler, stream))
                handler.setStream(sys.stderr)  # type: ignore[attr-defined]
        super().start()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            try:
                counts = spark_task_counts()
            except Exception:  # the context is stopping; the next poll will tell
                counts = None
            if counts is None:
                continue
            done, total, stages = counts
            label = f"tasks of {stages} active stage{'s' * (stages != 1)}" if stages else ""
            self.progress.update(self.task, completed=done, total=total or None, stages=label)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        for handler, stream in self._moved:
            handler.setStream(stream)  # type: ignore[attr-defined]
        self.progress.stop()


@contextmanager
def step(
    name: str, *, stream: TextIO | None = None, show: bool | None = None
) -> Iterator[StepReport]:
    """Time a step, log its row counts and duration, show Spark progress on a terminal."""
    global _current
    stream = stream or sys.stderr
    show = stream.isatty() if show is None else show
    report = StepReport(name)
    previous, _current = _current, report
    bar = _SparkBar(name, stream) if show else None
    if bar is not None:
        bar.start()
    log.info("%s: started", name)
    began = time.perf_counter()
    try:
        yield report
    except BaseException:
        report.seconds = time.perf_counter() - began
        log.error("%s: failed after %.1f s", name, report.seconds)
        raise
    else:
        report.seconds = time.perf_counter() - began
        log.info("%s", report.summary())
    finally:
        if bar is not None:
            bar.stop()
        _current = previous


def rows_of(result: Any, *names: str) -> None:
    """Record the integer fields `names` of a result object (dataclass or mapping)."""
    for name in names:
        value = result.get(name) if isinstance(result, dict) else getattr(result, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            record_rows(name, value)
