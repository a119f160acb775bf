"""The publish sequence (driver side): predictions and feature vectors into a new generation.

publish = plan the content (one pass over the frames; the generation id is derived from
it) → lock → make room and check the server (eviction policy, listpack limit, memory for
two generations) → register the generation → load from the Spark executors in parallel
(publish/writer.py) → verify (entries == rows, a random sample equals the DataFrame) →
flip the pointer with a compare-and-set → prune generations beyond `keep_generations`
(publish/generations.py).

Readers only ever follow `{ns}:current`, which changes in one atomic SET after the new
generation is complete and verified, so a failed or interrupted load changes nothing they
see. The generation id is derived from the content, so a retry of the same data reuses the
same id: a partial generation is wiped and loaded again, a live one is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, NoReturn

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scorehouse.errors import RedisLoadError
from scorehouse.features.registry import entity_key, feature_names, feature_sql, to_matrix
from scorehouse.publish.generations import (
    PublishLock,
    cleanup,
    count_entries,
    current_generation,
    flip,
    list_generations,
    read_generation,
    refuse_older,
    remove_generation,
)
from scorehouse.publish.plan import (
    Content,
    FileSource,
    LoadSpec,
    check_server,
    load_files,
    load_frame,
    plan_content,
    plan_files,
)
from scorehouse.publish.writer import ARM, ID, ROLE
from scorehouse.scoring.reader import choose_reader
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams, is_cluster
from scorehouse.serving.generation import Experiment, GenerationInfo
from scorehouse.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishRequest:
    """What one publish loads.

    `scores_files` / `features_files`: the same rows as the frames, planned as Parquet slices
    (`plan_files`); when every id is an integer id the load tasks read those files themselves
    (the frames still give the row count, fingerprint and the verification sample).
    """

    ds: date
    scores: DataFrame  # the project's key and `score`
    model_name: str
    model_version: str
    features: DataFrame | None = None  # the project's key and the registry's feature columns
    scores_files: FileSource | None = None
    features_files: FileSource | None = None
    attempt: str | None = None  # the generation id's last part (None: a hash of the content)
    # The experiment the scores serve: `scores` then has an `arm` column, which must be the
    # rule's for every row (checked in the planning pass).
    experiment: Experiment | None = None
    strict_config: bool = False  # an unreadable hash-max-listpack-entries refuses, not warns


@dataclass(frozen=True)
class _Run:
    """One publish under way: its connection, the frames it loads and its generation."""

    request: PublishRequest
    params: RedisParams
    client: AnyRedis
    cluster: bool
    ns: str  # redis.namespace
    started: float  # time.monotonic() once connected
    scores: DataFrame  # (ID, score)
    features: DataFrame | None  # (ID, the registry's features)
    content: Content
    generation: str
    live: str | None  # the generation readers follow now


def publish(spark: SparkSession, settings: Settings, request: PublishRequest) -> GenerationInfo:
    """Load the request's scores (and feature vectors) into a new generation, verify it, flip
    the pointer and prune old generations; a rerun of the live content changes nothing."""
    run = _plan(settings, request)
    if run.live == run.generation:
        done = _already_live(run.client, run.ns, run.generation, run.content.count)
        if done is not None:
            return done
    lock = PublishLock(run.client, keys.lock_key(run.ns))
    flipped = False
    try:
        warnings = _check_server(run, settings)
        _register(run, settings)
        stats, load_s = _load(spark, settings, run)
        verify(spark, run.client, settings, run.generation, run.scores, run.features, run.content)
        _go_live(run.client, run.ns, run.generation, run.live)
        flipped = True
        removed = cleanup(run.client, run.ns, settings.redis.keep_generations)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        live = run.generation if flipped else run.live
        raise _connection_lost(run.generation, live, exc) from exc
    finally:
        lock.release()
    return _report(run, stats, load_s, removed=len(removed), warnings=len(warnings))


def _plan(settings: Settings, request: PublishRequest) -> _Run:
    """Connect, plan the content (one pass over each frame) and name its generation."""
    cfg = settings.redis
    params = RedisParams.from_settings(cfg)
    client = params.connect()
    cluster = is_cluster(client)
    started = time.monotonic()
    scores, features = _frames(request.scores, request.features, request.experiment)
    content = plan_content(scores, features, cfg.bucket_size, request.experiment)
    if content.misassigned:
        raise RedisLoadError(_misassigned(request, content.misassigned))
    attempt = request.attempt
    if attempt is None:
        fingerprint = (
            f"{request.ds}|{request.model_name}|{request.model_version}|"
            f"{content.count}|{content.checksum}|{request.experiment or ''}"
        )
        attempt = hashlib.sha1(f"{fingerprint}|{cfg.bucket_size}".encode()).hexdigest()[:8]
    generation = keys.generation_id(request.ds, request.model_version, attempt)
    live = current_generation(client, cfg.namespace)
    return _Run(
        request,
        params,
        client,
        cluster,
        cfg.namespace,
        started,
        scores,
        features,
        content,
        generation,
        live,
    )


def _misassigned(request: PublishRequest, rows: int) -> str:
    experiment = request.experiment
    assert experiment is not None
    return (
        f"{rows} scores of {request.ds} are not in the arm that experiment {experiment.name!r} "
        f"with challenger share {experiment.share} gives them: the day was scored with other "
        "experiment settings; score it again or set experiment.* as it was scored"
    )


def _check_server(run: _Run, settings: Settings) -> list[str]:
    """Make room first (keep the live generation only, so load + live = two generations),
    then refuse a server that cannot take the new one; its warnings."""
    for old in list_generations(run.client, run.ns):
        if old != run.live:
            remove_generation(run.client, run.ns, old)
    return check_server(
        run.client,
        bucket_size=settings.redis.bucket_size,
        needed_bytes=run.content.needed_bytes(),
        strict_config=run.request.strict_config,
    )


def _register(run: _Run, settings: Settings) -> None:
    """Register the new generation, `status=loading`."""
    request = run.request
    meta = _meta(
        request.ds,
        request.model_name,
        request.model_version,
        run.content,
        settings.redis.bucket_size,
        run.live,
    )
    if request.experiment is not None:
        meta.update(request.experiment.meta())
    run.client.zadd(keys.generations_key(run.ns), {run.generation: time.time()})
    run.client.hset(keys.meta_key(run.ns, run.generation), mapping=meta)  # type: ignore[arg-type]


def _load(spark: SparkSession, settings: Settings, run: _Run) -> tuple[dict[str, int], float]:
    """Load the scores, then the feature vectors; the score load's totals and seconds. A
    failed load removes the partial generation and raises (`_fail`)."""
    spec = _load_spec(spark, settings, run.params, run.generation, run.cluster)
    content, request = run.content, run.request
    t_load = time.monotonic()
    try:
        stats = _load_rows(spark, spec, run.scores, request.scores_files, content, content.count)
        load_s = time.monotonic() - t_load
        if run.features is not None:
            fspec = replace(spec, kind="f", feature_columns=content.features)
            files = request.features_files
            _load_rows(spark, fspec, run.features, files, content, content.features_count)
    except Exception as exc:
        _fail(run.client, run.ns, run.generation, run.live, exc)
    return stats, load_s


def _report(
    run: _Run, stats: dict[str, int], load_s: float, *, removed: int, warnings: int
) -> GenerationInfo:
    """The live generation's info with the publish's figures; closes the connection."""
    info = read_generation(run.client, run.ns, run.generation)
    assert info is not None
    total_s = time.monotonic() - run.started
    run.client.close()
    figures = {
        **_load_figures(stats, run.content.count, load_s),
        "total_s": total_s,
        "removed_generations": removed,
        "warnings": warnings,
    }
    log.info(
        "published %s: %d scores, %d feature vectors in %.1fs (%s)",
        run.generation,
        run.content.count,
        run.content.features_count,
        total_s,
        run.params,
    )
    return GenerationInfo(**{**info.__dict__, "stats": figures})


def _frames(
    scores: DataFrame, features: DataFrame | None, experiment: Experiment | None = None
) -> tuple[DataFrame, DataFrame | None]:
    """The columns a publish loads: (key, score as double[, arm]) and the registry's
    features, the project's key column renamed to the load's ID."""
    key = entity_key().name
    needed = (key, "score", ARM) if experiment is not None else (key, "score")
    missing = [n for n in needed if n not in scores.columns]
    if missing:
        raise RedisLoadError(f"scores frame lacks columns {missing}")
    scores = scores.select(
        F.col(key).alias(ID), F.col("score").cast("double").alias("score"), *needed[2:]
    )
    if features is None:
        return scores, None
    names = feature_names()
    missing = [n for n in (key, *names) if n not in features.columns]
    if missing:
        raise RedisLoadError(f"features frame lacks columns {missing}")
    return scores, features.select(F.col(key).alias(ID), *names)


def _already_live(client: AnyRedis, ns: str, generation: str, count: int) -> GenerationInfo | None:
    """The live generation's info when it already holds this content (a rerun), else None."""
    info = read_generation(client, ns, generation)
    if info is not None and info.status == "live" and info.count == count:
        log.info("generation %s is already live with the same content; nothing to do", generation)
        return info
    return None


def _meta(
    ds: date,
    model_name: str,
    model_version: str,
    content: Content,
    bucket_size: int,
    live: str | None,
) -> dict[str, Any]:
    """A new generation's metadata hash, `status=loading`."""
    project = feature_sql().project
    return {
        "ds": ds.isoformat(),
        "project": project.name,
        "entity_key": f"{project.entity.key}:{project.entity.type}",
        "model_name": model_name,
        "model_version": str(model_version),
        "count": content.count,
        "features_count": content.features_count,
        "features": ",".join(content.features),
        "string_buckets": content.string_buckets,
        "bucket_size": bucket_size,
        "score_scale": keys.SCORE_SCALE,
        "checksum": content.checksum,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loaded_at": "",
        "status": "loading",
        "previous": live or "",
    }


def _load_spec(
    spark: SparkSession, settings: Settings, params: RedisParams, generation: str, cluster: bool
) -> LoadSpec:
    """The score load tasks' spec: the rate cap is split over the tasks that run at once."""
    cfg = settings.redis
    tasks = max(1, spark.sparkContext.defaultParallelism)
    if cfg.load_connections:
        tasks = min(tasks, cfg.load_connections)
    per_task = cfg.max_keys_per_second / tasks if cfg.max_keys_per_second else None
    target = cfg.reader_latency_target_ms
    return LoadSpec(
        params,
        cfg.namespace,
        generation,
        "s",
        cfg.bucket_size,
        per_task,
        cluster,
        max_tasks=cfg.load_connections,
        latency_target_s=target / 1e3 if target else None,
    )


def _load_rows(
    spark: SparkSession,
    spec: LoadSpec,
    frame: DataFrame,
    files: FileSource | None,
    content: Content,
    rows: int,
) -> dict[str, int]:
    """Load one frame's rows: the tasks read its files when every id is an integer id and
    the files are planned, otherwise Spark hands them the rows (the totals' `from_files`)."""
    if content.string_buckets == 0 and files is not None:
        return {**load_files(spark, files, spec), "from_files": 1}
    return {**load_frame(spark, frame, spec, content.string_buckets, rows), "from_files": 0}


def _go_live(client: AnyRedis, ns: str, generation: str, live: str | None) -> None:
    """Mark the verified generation ready, flip the pointer to it, then record the statuses."""
    loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
    client.hset(keys.meta_key(ns, generation), mapping={"status": "ready", "loaded_at": loaded_at})
    flip(client, ns, live, generation)
    client.hset(keys.meta_key(ns, generation), "status", "live")
    if live:
        client.hset(keys.meta_key(ns, live), "status", "previous")


def _load_figures(stats: dict[str, int], count: int, load_s: float) -> dict[str, Any]:
    """A publish's load-stage figures, from the score load's task totals."""
    return {
        "load_s": load_s,
        "entities_per_s": count / load_s if load_s else 0.0,
        "commands": stats["commands"],
        "load_tasks": stats["tasks"],
        "load_rows": stats["rows"],
        "load_path": "files" if stats["from_files"] else "spark",
        "bytes_sent": stats["bytes"],
        # The rate limit's and the latency guard's waits, summed over the tasks.
        "throttled_s": stats["throttled_ms"] / 1e3,
        "guard_probes": stats["probes"],
        "guard_probes_over_target": stats["probes_over"],
        "guard_slowdowns": stats["slowdowns"],
    }


def _fail(client: AnyRedis, ns: str, generation: str, live: str | None, exc: Exception) -> NoReturn:
    # The partial generation is removed at once: at maxmemory its keys would otherwise stop
    # the retry. Best effort: when Redis itself is gone nothing can be removed (the next
    # publish's clean-up does it), and that error must not replace the one that tells the
    # user what to do.
    with contextlib.suppress(RedisError):
        remove_generation(client, ns, generation)
    raise RedisLoadError(
        f"loading generation {generation} failed ({_reason(exc)}); readers still see {live or 'nothing'}; "
        "run the same publish again to finish it"
    ) from exc


def _connection_lost(generation: str, live: str | None, exc: Exception) -> RedisLoadError:
    return RedisLoadError(
        f"connection to Redis lost while publishing generation {generation} ({_reason(exc)}); "
        f"readers still see {live or 'nothing'}; run the same publish again once Redis answers"
    )


# The last line of a Python traceback ("redis.exceptions.ResponseError: WRONGTYPE ..."); a
# task failure reaches the driver wrapped in a Spark exception whose first line says nothing.
_PY_ERROR = re.compile(
    r"^(?!(?:org|java|scala|py4j)\.)(?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception): .+$"
)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    found = [line.strip() for line in text.splitlines() if _PY_ERROR.match(line.strip())]
    if found:
        return found[-1]
    return text.splitlines()[0] if text else type(exc).__name__


def verify(
    spark: SparkSession,
    client: AnyRedis,
    settings: Settings,
    generation: str,
    scores: DataFrame,
    features: DataFrame | None,
    content: Content,
) -> None:
    """Entries == rows and a random sample reads back equal; otherwise mark failed and raise."""
    count, features_count = content.count, content.features_count
    cfg = settings.redis
    ns = cfg.namespace
    problems: list[str] = []
    entries = count_entries(client, keys.score_pattern(ns, generation))
    if entries != count:
        problems.append(
            f"{entries} scores in Redis for {count} rows (duplicate ids or a lost batch)"
        )
    if features is not None:
        fentries = count_entries(client, keys.features_pattern(ns, generation))
        if fentries != features_count:
            problems.append(f"{fentries} feature vectors in Redis for {features_count} rows")
    if not problems and cfg.verify_sample and count:
        problems += _verify_sample(
            client, cfg, generation, scores, features, count, content.string_buckets
        )
    if problems:
        client.hset(keys.meta_key(ns, generation), "status", "failed")
        raise RedisLoadError(
            f"verification of generation {generation} failed, pointer not flipped: "
            + "; ".join(problems)
        )


def _sample(df: DataFrame, n: int, total: int) -> list[Any]:
    fraction = min(1.0, 2.0 * n / max(1, total))
    return (
        df.sample(withReplacement=False, fraction=fraction, seed=int(time.time()))
        .limit(n)
        .collect()
    )


def _verify_sample(
    client: AnyRedis,
    cfg: Any,
    generation: str,
    scores: DataFrame,
    features: DataFrame | None,
    count: int,
    string_buckets: int,
) -> list[str]:
    ns = cfg.namespace
    problems: list[str] = []
    rows = _sample(scores, cfg.verify_sample, count)
    pipe = client.pipeline(transaction=False)
    for row in rows:
        slot = keys.slot_of(row[ID], cfg.bucket_size, string_buckets)
        pipe.hget(keys.score_key(ns, generation, slot.bucket), slot.field)
    for row, raw in zip(rows, pipe.execute(), strict=True):
        if (
            raw is None
            or abs(keys.decode_score(raw) - float(row["score"])) > 0.5 / keys.SCORE_SCALE + 1e-12
        ):
            problems.append(f"score of {row[ID]}: Redis {raw!r} != table {row['score']!r}")
            break
    if features is not None:
        names = [c for c in features.columns if c != ID]
        frows = _sample(features, cfg.verify_sample, count)
        pipe = client.pipeline(transaction=False)
        for row in frows:
            slot = keys.slot_of(row[ID], cfg.bucket_size, string_buckets)
            pipe.hget(keys.features_key(ns, generation, slot.bucket), slot.field)
        for row, raw in zip(frows, pipe.execute(), strict=True):
            expected = to_matrix({n: np.array([row[n]], dtype=object) for n in names}, names)
            got = keys.decode_features(raw, len(names)) if raw is not None else None
            if got is None or not np.array_equal(got, expected, equal_nan=True):
                problems.append(f"features of {row[ID]}: Redis {raw!r} != table")
                break
    return problems


def publish_date(
    spark: SparkSession, settings: Settings, ds: date, *, allow_older: bool = False
) -> GenerationInfo:
    """Publish the champion predictions of `ds` and that day's feature vectors from the
    warehouse; refused when the live generation is of a newer day, unless `allow_older`."""
    from scorehouse.storage.warehouse import Warehouse

    if not allow_older:
        refuse_older(settings, ds)

    warehouse = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    entity = entity_key()
    key = entity.name
    # One pinned version per table: the frame (count, fingerprint, verification) and the
    # files the load tasks read (with the arrow reader) are the same rows. String ids go
    # through Spark, which computes their buckets (the file path is for integer ids).
    files = choose_reader("auto") == "arrow" and entity.type == "int64"
    version = warehouse.version(tables.predictions)
    day = warehouse.read(tables.predictions, version=version, partitions={"ds": [ds]})
    model_name, model_version, experiment = _day_models(settings, day, ds)
    # The rows the generation serves: the champion's, or with an experiment each entity's arm's.
    served = F.col(ROLE) == F.coalesce(F.col(ARM), F.lit("champion"))
    predictions = day.where(served if experiment is not None else F.col(ROLE) == "champion")
    features = None
    features_files = None
    if warehouse.exists(tables.features):
        names = feature_names()
        fversion = warehouse.version(tables.features)
        frame = warehouse.read(tables.features, version=fversion, partitions={"ds": [ds]})
        missing = [n for n in (key, *names) if n not in frame.columns]
        if missing:
            raise RedisLoadError(f"table {tables.features} lacks feature columns {missing}")
        features = frame.select(key, *names)
        if files:
            features_files = plan_files(
                spark, warehouse, tables.features, fversion, ds, [key, *names]
            )
    else:
        log.warning("table %s does not exist: publishing scores without features", tables.features)
    return publish(
        spark,
        settings,
        PublishRequest(
            ds=ds,
            scores=predictions.select(key, "score", *([ARM] if experiment else [])),
            features=features,
            model_name=model_name,
            model_version=model_version,
            experiment=experiment,
            scores_files=plan_files(
                spark, warehouse, tables.predictions, version, ds, [key, "score"], role="champion"
            )
            if files
            else None,
            features_files=features_files,
        ),
    )


def _day_models(settings: Settings, day: DataFrame, ds: date) -> tuple[str, str, Experiment | None]:
    """The champion's model name and version of a predictions day, and the experiment its
    rows assign arms in (None: none, or no `arm` column in the table)."""
    table = settings.tables.predictions
    arms = ARM in day.columns
    fields = [ROLE, "model_name", "model_version", *(["experiment"] if arms else [])]
    found = day.select(*fields).distinct().collect()
    champions = [r for r in found if r[ROLE] == "champion"]
    if not champions:
        raise RedisLoadError(f"no champion predictions for ds={ds} in table {table}")
    if len({(r.model_name, r.model_version) for r in champions}) > 1:
        models = ", ".join(sorted({f"{r.model_name} v{r.model_version}" for r in champions}))
        raise RedisLoadError(f"champion predictions for ds={ds} come from several models: {models}")
    names = {r.experiment for r in found if arms and r.experiment is not None}
    if not names:
        return champions[0].model_name, str(champions[0].model_version), None
    cfg = settings.experiment
    challengers = {str(r.model_version) for r in found if r[ROLE] == "challenger"}
    if cfg.name is None or names != {cfg.name} or len(challengers) != 1:
        raise RedisLoadError(
            f"predictions of ds={ds} assign arms in experiment(s) {sorted(names)} with "
            f"challenger(s) {sorted(challengers)}; settings name experiment {cfg.name!r}: set "
            "experiment.name (and challenger_share) as the day was scored, or score it again"
        )
    share = cfg.challenger_share
    experiment = Experiment(cfg.name, share, keys.challenger_slots(share), challengers.pop())
    return champions[0].model_name, str(champions[0].model_version), experiment
