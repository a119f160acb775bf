"""Prefect flows: nightly, weekly_train and backfill, one task run per step.

A step that needs Spark is one of `orchestration.steps.STEPS`: the task calls
`run_step` in this process, or submits it through spark-submit (`orchestration.runner`),
and gets the same result dict back; verify and clean-up only talk to Redis. Tasks exchange dates, table names, the config path and Delta versions,
never Spark objects. Steps are idempotent and skip work already done for the same inputs
(see scorehouse.orchestration.ledger), so a rerun after a failure resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

from prefect import Flow, Task, flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.logging.loggers import flow_run_logger
from prefect.states import State

from scorehouse.errors import RedisLoadError, ValidationError
from scorehouse.orchestration import report
from scorehouse.orchestration.alerts import alert_payload, quality_payload, send_alert
from scorehouse.orchestration.runner import StepFailed, forward_library_logs, submit_step
from scorehouse.orchestration.steps import run_step, skip_result
from scorehouse.settings import Settings, load_settings

R = TypeVar("R")
WEBHOOK_ENV = "SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL"
# Per flow run (this process): the date and the step under way, for the failure hook.
_RUNS: dict[str, dict[str, str]] = {}


def yesterday_utc() -> date:
    return datetime.now(tz=UTC).date() - timedelta(days=1)


def refuse_incomplete(ds: date, allow: bool) -> None:
    """A nightly for a day that is not over (today or later, UTC) would publish features
    that miss the rest of the day's events: refused unless asked for."""
    today = datetime.now(tz=UTC).date()
    if ds >= today and not allow:
        raise ValidationError(
            f"nightly {ds}: that day is not complete yet (today is {today} UTC); run it for "
            f"{today - timedelta(days=1)} or earlier, or pass --allow-incomplete"
        )


def _dated(name: str, *keys: str) -> Callable[[], str]:
    """A flow run name from the run's date parameters: `nightly-2026-01-15`. A date left
    out is the flow's default: yesterday (UTC) for the first, the previous one for the rest
    (backfill's end is its start)."""

    def run_name() -> str:
        params = runtime.flow_run.parameters
        days: list[str] = []
        for key in keys:
            value = params.get(key) or (days[-1] if days else yesterday_utc())
            days.append(str(value))
        return "-".join([name, *days])

    return run_name


def _run_id() -> str | None:
    value = runtime.flow_run.get_id()
    return str(value) if value else None


def _worth_retrying(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry crashes and timeouts, not data that broke a rule: it fails the same way again."""
    try:
        state.result()
    except ValidationError:
        return False
    except StepFailed as exc:
        return not exc.data_error
    except Exception:
        return True
    return True


def _step(name: str, config: str | None, **params: Any) -> dict[str, Any]:
    """Run step `name` the configured way; log its row count and duration. Under
    spark-submit, a step whose output is current is found here, so no JVM starts for it."""
    settings = load_settings(config)
    logger = get_run_logger()
    began = time.perf_counter()
    if settings.orchestration.runner == "spark_submit":
        result = skip_result(name, settings, params) or submit_step(
            settings, name, params, logger, config
        )
    else:
        with forward_library_logs(logger):
            result = run_step(name, settings, params)
    seconds = time.perf_counter() - began
    rows = result.get("rows", result.get("count"))
    if result.get("skipped"):
        logger.info("%s: skipped (%s); %s rows", name, result.get("skip_reason"), rows)
    else:
        logger.info(
            "%s: %s rows in %.1f s (%s)", name, rows, seconds, settings.orchestration.runner
        )
    return result


# --------------------------------------------------------------------------- steps


@task(name="features", task_run_name="features-{start}-{end}")
def features_task(
    start: date, end: date, config: str | None = None, force: bool = False
) -> dict[str, Any]:
    return _step("features", config, start=start, end=end, force=force, flow_run_id=_run_id())


@task(name="checks", task_run_name="checks-{ds}")
def checks_task(ds: date, config: str | None = None, force: bool = False) -> dict[str, Any]:
    return _step("checks", config, ds=ds, force=force)


@task(name="score", task_run_name="score-{ds}")
def score_task(
    ds: date, config: str | None = None, fail_on: str | None = None, force: bool = False
) -> dict[str, Any]:
    return _step("score", config, ds=ds, fail_on=fail_on, force=force, flow_run_id=_run_id())


@task(name="publish", task_run_name="publish-{ds}")
def publish_task(
    ds: date, config: str | None = None, force: bool = False, allow_older: bool = False
) -> dict[str, Any]:
    return _step(
        "publish", config, ds=ds, force=force, allow_older=allow_older, flow_run_id=_run_id()
    )


@task(name="verify", task_run_name="verify-{ds}")
def verify_task(ds: date, generation: str, rows: int, config: str | None = None) -> dict[str, Any]:
    """What readers follow now: the pointer names this day's generation, complete and live."""
    from scorehouse.publish.generations import count_entries, current_generation, read_generation
    from scorehouse.serving import keys
    from scorehouse.serving.connection import RedisParams

    settings = load_settings(config)
    ns = settings.redis.namespace
    began = time.perf_counter()
    client = RedisParams.from_settings(settings.redis).connect()
    try:
        live = current_generation(client, ns)
        info = read_generation(client, ns, live) if live else None
        entries = count_entries(client, keys.score_pattern(ns, live)) if live else 0
    finally:
        client.close()
    problems = []
    if live != generation:
        problems.append(f"{keys.pointer_key(ns)} names {live}, not {generation}")
    if info is None or info.ds != ds or info.status != "live":
        problems.append(f"generation {live} meta: {info}")
    if entries != rows:
        problems.append(f"{entries} scores in Redis for {rows} predictions")
    if problems:
        raise RedisLoadError(f"verify {ds}: " + "; ".join(problems))
    seconds = time.perf_counter() - began
    get_run_logger().info("verify %s: %s live with %d scores (%.1f s)", ds, live, entries, seconds)
    return {"generation": live, "rows": entries, "seconds": seconds}


@task(name="cleanup", task_run_name="cleanup-{ds}")
def cleanup_task(ds: date, config: str | None = None) -> dict[str, Any]:
    """Remove generations beyond redis.keep_generations (loads that failed or were replaced)."""
    from scorehouse.publish.generations import cleanup
    from scorehouse.serving.connection import RedisParams

    settings = load_settings(config)
    began = time.perf_counter()
    client = RedisParams.from_settings(settings.redis).connect()
    try:
        removed = cleanup(client, settings.redis.namespace, settings.redis.keep_generations)
    finally:
        client.close()
    seconds = time.perf_counter() - began
    get_run_logger().info("cleanup %s: removed %d generations (%.1f s)", ds, len(removed), seconds)
    return {"removed": removed, "rows": len(removed), "seconds": seconds}


@task(name="outcomes", task_run_name="outcomes-{ds}")
def outcomes_task(ds: date, config: str | None = None) -> dict[str, Any]:
    return _step("outcomes", config, ds=ds, flow_run_id=_run_id())


def _feedback(
    steps: _Steps, ds: date, scoring: dict[str, Any], config: str | None
) -> dict[str, Any] | None:
    """The outcomes of the night whose horizon just ended; an alert when a model ranks
    worse than at training (or scoring found critical drift), and, when
    monitoring.retrain_on_alert, weekly_train off-schedule (its model still faces the gate)."""
    measured = steps.run("outcomes", outcomes_task, ds, config)
    reasons = [
        f"{a['model_role']} v{a['model_version']} realized AUC {a['roc_auc']:.3f} on "
        f"{measured['scored_ds']}, test AUC {a['test_roc_auc']:.3f}"
        for a in measured["alerts"]
    ]
    if scoring.get("drift_level") == "critical":
        reasons.append(f"critical drift on {ds}: {', '.join(scoring.get('drift_critical', []))}")
    if not reasons:
        return None
    logger = get_run_logger()
    send_alert(steps.settings, quality_payload("nightly", _run_id(), str(ds), reasons), logger)
    if not steps.settings.monitoring.retrain_on_alert:
        return None
    logger.warning("retraining off-schedule as of %s: %s", ds, "; ".join(reasons))
    return weekly_train(as_of=ds, config=config)


@task(name="training-set", task_run_name="training-set-{start}-{end}")
def training_set_task(start: date, end: date, config: str | None = None) -> dict[str, Any]:
    return _step("training_set", config, start=start, end=end)


@task(name="train", task_run_name="train-{as_of}")
def train_task(as_of: date, training_version: int, config: str | None = None) -> dict[str, Any]:
    return _step("train", config, as_of=as_of, training_version=training_version)


@task(name="gate", task_run_name="gate-{version}")
def gate_task(
    version: str, promoted: bool, reason: str, config: str | None = None
) -> dict[str, Any]:
    """The champion gate's decision, checked against the registry's aliases now."""
    from scorehouse.training.registry import CHALLENGER, CHAMPION, alias_version

    settings = load_settings(config)
    champion = alias_version(settings, CHAMPION)
    challenger = alias_version(settings, CHALLENGER)
    expected = CHAMPION if promoted else CHALLENGER
    holder = champion if promoted else challenger
    if holder != version:
        raise ValidationError(
            f"gate: v{version} should hold the {expected} alias, but it is on v{holder}"
        )
    get_run_logger().info(
        "gate: v%s %s: %s (champion v%s)",
        version,
        "PROMOTED to champion" if promoted else "kept as challenger",
        reason,
        champion,
    )
    return {"version": version, "promoted": promoted, "reason": reason, "champion": champion}


# --------------------------------------------------------------------------- running steps


def _configured(step: Task[..., R], settings: Settings) -> Task[..., R]:
    """Retries with exponential back-off, from settings (a deployment overrides them)."""
    orch = settings.orchestration
    return step.with_options(
        retries=orch.retries,
        retry_delay_seconds=[orch.retry_delay_s * 2**i for i in range(orch.retries)] or 0,
        retry_condition_fn=_worth_retrying,
    )


class _Steps:
    """Runs steps in order, keeping each result and wall time, and noting the step under
    way for the failure hook."""

    def __init__(self, settings: Settings, ds: date | None) -> None:
        self.settings = settings
        self.results: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}
        self.run_id = _run_id() or "local"
        _RUNS[self.run_id] = {"ds": ds.isoformat() if ds else ""}

    def run(self, name: str, step: Task[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        _RUNS[self.run_id]["step"] = name
        began = time.perf_counter()
        result = _configured(step, self.settings)(*args)
        self.timings[name] = round(time.perf_counter() - began, 3)
        self.results[name] = result
        return result

    def done(self) -> None:
        _RUNS.pop(self.run_id, None)


def _alert_on_failure(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """on_failure hook: an ERROR log line and, when configured, a webhook POST."""
    context = _RUNS.pop(str(flow_run.id), {})
    params = flow_run.parameters or {}
    ds = context.get("ds") or (str(params["ds"]) if params.get("ds") else None)
    try:
        settings = load_settings(params.get("config"))
    except Exception:  # the alert must go out even when the config is what broke
        webhook = {WEBHOOK_ENV: os.environ[WEBHOOK_ENV]} if WEBHOOK_ENV in os.environ else {}
        settings = load_settings(environ=webhook)
    payload = alert_payload(
        flow.name, str(flow_run.id), context.get("step"), state.message or "failed", ds
    )
    # The run's own logger, so the alert shows in the run's log in the Prefect UI.
    send_alert(settings, payload, flow_run_logger(flow_run, flow))


def _publish_and_verify(
    steps: _Steps, ds: date, rows: int, config: str | None, force: bool, allow_older: bool = False
) -> None:
    published = steps.run("publish", publish_task, ds, config, force, allow_older)
    steps.run("verify", verify_task, ds, published["generation"], rows, config)
    steps.run("cleanup", cleanup_task, ds, config)


# --------------------------------------------------------------------------- flows


@flow(
    name="nightly",
    flow_run_name=_dated("nightly", "ds"),
    log_prints=True,
    on_failure=[_alert_on_failure],
)
def nightly(
    ds: date | None = None,
    config: str | None = None,
    fail_on: Literal["warn", "critical"] | None = None,
    force: bool = False,
    allow_incomplete: bool = False,
    allow_older: bool = False,
) -> dict[str, Any]:
    """Features for ds → checks → score (with drift monitoring) → publish → verify → clean-up
    → outcomes of the night whose label horizon ended on ds (alert, optional retraining).

    Any failed step stops the run before publishing, so Redis keeps serving the previous
    generation; a rerun skips the steps whose output is already current. A day that is not
    over yet (today or later, UTC) is refused unless `allow_incomplete`, and a day older
    than the live generation's is not published unless `allow_older`.
    """
    ds = ds or yesterday_utc()
    refuse_incomplete(ds, allow_incomplete)
    settings = load_settings(config)
    steps = _Steps(settings, ds)
    steps.run("features", features_task, ds, ds, config, force)
    steps.run("checks", checks_task, ds, config, force)
    scoring = steps.run("score", score_task, ds, config, fail_on, force)
    _publish_and_verify(steps, ds, int(scoring["rows"]), config, force, allow_older)
    retrained = _feedback(steps, ds, scoring, config)
    steps.done()
    result: dict[str, Any] = {
        "ds": ds.isoformat(),
        "features": steps.results["features"],
        "scoring": scoring,
        "publish": steps.results["publish"],
        "outcomes": steps.results["outcomes"],
        "retrained": retrained,
        "steps": steps.results,
        "timings": steps.timings,
        "artifact_key": f"nightly-{ds.isoformat()}",
    }
    create_markdown_artifact(
        markdown=report.nightly_markdown(result),
        key=result["artifact_key"],
        description=f"nightly {ds}: counts, timings, model, drift",
    )
    return result


@flow(
    name="weekly_train",
    flow_run_name=_dated("weekly-train", "as_of"),
    log_prints=True,
    on_failure=[_alert_on_failure],
)
def weekly_train(
    as_of: date | None = None, lookback_days: int | None = None, config: str | None = None
) -> dict[str, Any]:
    """Point-in-time training set over the lookback window → train → champion gate.

    The lookback defaults to `features.training_lookback_days`, which the snapshot
    retention is checked against."""
    as_of = as_of or yesterday_utc()
    settings = load_settings(config)
    if lookback_days is None:
        lookback_days = settings.features.training_lookback_days
    steps = _Steps(settings, as_of)
    built = steps.run(
        "training-set", training_set_task, as_of - timedelta(days=lookback_days), as_of, config
    )
    trained = steps.run("train", train_task, as_of, built["table_version"], config)
    gate = steps.run(
        "gate", gate_task, trained["version"], trained["promoted"], trained["reason"], config
    )
    steps.done()
    result: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "training_set": built,
        "training": trained,
        "gate": gate,
        "steps": steps.results,
        "timings": steps.timings,
        "artifact_key": f"weekly-train-{as_of.isoformat()}",
    }
    create_markdown_artifact(
        markdown=report.generic_markdown(
            f"weekly_train {as_of}",
            result,
            [
                f"model {trained['model_name']} v{trained['version']} → **{trained['alias']}**: "
                f"{trained['reason']}",
                f"test AUC {trained.get('test_roc_auc')}",
                f"training set: {built['rows']} rows, Delta version {built['table_version']}",
                "MLflow: "
                + report.mlflow_link(
                    trained.get("tracking_uri"), trained.get("experiment_id"), trained["run_id"]
                ),
            ],
        ),
        key=result["artifact_key"],
        description=f"weekly_train {as_of}: gate decision",
    )
    return result


@flow(
    name="backfill",
    flow_run_name=_dated("backfill", "start", "end"),
    log_prints=True,
    on_failure=[_alert_on_failure],
)
def backfill(
    start: date,
    end: date | None = None,
    what: Literal["features", "predictions", "both"] = "both",
    publish_last: bool = False,
    config: str | None = None,
    fail_on: Literal["warn", "critical"] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Features and/or predictions for every day of start..end with the nightly's steps
    (features in one range build; checks and score per day); optionally publish the last day."""
    end = end or start
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    settings = load_settings(config)
    steps = _Steps(settings, end)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if what in ("features", "both"):
        steps.run("features", features_task, start, end, config, force)
    rows: dict[str, int] = {}
    if what in ("predictions", "both"):
        for day in days:
            steps.run(f"checks-{day}", checks_task, day, config, force)
            scored = steps.run(f"score-{day}", score_task, day, config, fail_on, force)
            rows[day.isoformat()] = int(scored["rows"])
    if publish_last:
        last = rows.get(end.isoformat())
        if last is None:
            raise ValidationError("backfill: publish_last needs the predictions of the last day")
        _publish_and_verify(steps, end, last, config, force)
    steps.done()
    result: dict[str, Any] = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "what": what,
        "rows": rows,
        "steps": steps.results,
        "timings": steps.timings,
        "artifact_key": f"backfill-{start.isoformat()}-{end.isoformat()}",
    }
    create_markdown_artifact(
        markdown=report.generic_markdown(
            f"backfill {start}..{end} ({what})",
            result,
            [f"{len(days)} days", f"predictions per day: {rows or 'none'}"],
        ),
        key=result["artifact_key"],
        description=f"backfill {start}..{end}",
    )
    return result
