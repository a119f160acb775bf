"""The scheduled path: `scorehouse up` + `deploy`, a worker runs the nightly deployment, the UI shows it.

A real Prefect server, MLflow server and redis-server (started by scorehouse.stack on
free loopback ports, state in a temp home), the deployments of the repository's
prefect.yaml, a real process worker, and headless Chromium rendering the flow run page.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse import localstack, stack
from scorehouse.data.generate import write_generated
from scorehouse.features import transforms
from scorehouse.features.registry import feature_sql
from scorehouse.features.training_set import build_training_set
from scorehouse.paths import REPO_ROOT
from scorehouse.serving import keys
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training.train import train_from_warehouse

CUSTOMERS = 300
DAYS = 100
WARM_UP = 30  # as-of dates start once customers have some history
HORIZON_DAYS = 7  # a short label horizon (and split gap) keeps the history short
END = date(2026, 10, 31)
TRAIN_AS_OF = END - timedelta(days=1)
RUN_TIMEOUT_S = 420  # per run, generous: the machine running the suite may be busy
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = pytest.mark.slow


@pytest.fixture
def stack_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings in a temp home on free ports; set in the environment so the worker's runs see them."""
    home = tmp_path / "home"
    env = {
        "SCOREHOUSE_HOME": str(home),
        "SCOREHOUSE_WAREHOUSE": str(home / "warehouse"),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_MLFLOW__TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        "SCOREHOUSE_MLFLOW__ARTIFACT_LOCATION": str(home / "mlartifacts"),
        "SCOREHOUSE_REDIS__URL": f"redis://127.0.0.1:{localstack.free_port()}/0",
        "SCOREHOUSE_MODEL__NUM_BOOST_ROUND": "20",
        "SCOREHOUSE_MODEL__HORIZON_DAYS": str(HORIZON_DAYS),
        # A failed step fails the run at once (the assertion shows its logs).
        "SCOREHOUSE_ORCHESTRATION__RETRIES": "0",
        # The worker (it inherits this) polls often: a held-back run starts soon after.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "SCOREHOUSE_STACK__PREFECT_PORT": str(localstack.free_port()),
        "SCOREHOUSE_STACK__MLFLOW_PORT": str(localstack.free_port()),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture
def running_stack(stack_settings: Settings) -> Iterator[Settings]:
    """`scorehouse up`; `scorehouse down` afterwards, whatever happened, and nothing left running."""
    try:
        yield stack_settings
    finally:
        stopped = stack.down(stack_settings)
        pids = [s.pid for s in stopped if s.pid]
        assert not [pid for pid in pids if localstack.pid_alive(pid)], stopped


def _api(settings: Settings) -> httpx.Client:
    return httpx.Client(base_url=stack.prefect_api_url(settings), timeout=30.0)


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


def _wait_for_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = _ok(api.get(f"/flow_runs/{run_id}"))
        if run["state_type"] in TERMINAL:
            return dict(run)
        time.sleep(2)
    return dict(_ok(api.get(f"/flow_runs/{run_id}")))


def _run_logs(api: httpx.Client, run_id: str) -> str:
    logs = api.post(
        "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    ).json()
    return "\n".join(f"{log['level']} {log['message']}" for log in logs)


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "chromium is not installed: `bash scripts/setup.sh` installs it (Debian package)"
        )
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            # The UI is a single-page app: give its API calls time to come back and render.
            "--virtual-time-budget=20000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _generate(spark: SparkSession, settings: Settings) -> int:
    """A small warehouse and the training set of a first model, as `make demo` builds them."""
    start = END - timedelta(days=DAYS - 1)
    write_generated(spark, settings, customers=CUSTOMERS, start=start, days=DAYS, seed=5)
    training = build_training_set(
        spark, settings, END - timedelta(days=DAYS - WARM_UP), TRAIN_AS_OF
    )
    return training.table_version


def _up_and_deploy(settings: Settings) -> tuple[list[stack.Status], ...]:
    """`scorehouse up` (twice: the second reports what runs) and `scorehouse deploy`."""
    started = stack.up(settings)
    again = stack.up(settings)
    return started, again, stack.deploy(settings)


def test_nightly_deployment_runs_on_a_worker_and_renders_in_the_ui(
    spark: SparkSession, running_stack: Settings, tmp_path: Path
) -> None:
    settings = running_stack
    # The servers start while Spark generates data; training waits for the MLflow server,
    # which creates the SQLite store's tables first (two processes must not both migrate it).
    with ThreadPoolExecutor(max_workers=1) as pool:
        stack_started = pool.submit(_up_and_deploy, settings)
        training_version = _generate(spark, settings)
        started, again, deployed = stack_started.result()
    trained = train_from_warehouse(
        spark, settings, as_of=TRAIN_AS_OF, training_version=training_version
    )
    assert trained.alias == "champion"

    assert [(s.name, s.state) for s in started] == [
        ("redis-server", "started"),
        ("prefect-server", "started"),
        ("mlflow-server", "started"),
    ]
    assert [s.state for s in again] == ["already running"] * 3
    assert [s.pid for s in again] == [s.pid for s in started]
    assert [(s.name, s.state) for s in deployed] == [
        ("deployment nightly", "registered"),
        ("deployment weekly_train", "registered"),
        ("deployment backfill", "registered"),
        ("prefect-worker-scorehouse-process", "started"),
    ]

    # The MLflow server serves the project's store: the champion trained above is there.
    model = httpx.get(
        f"{stack.mlflow_url(settings)}/api/2.0/mlflow/registered-models/get",
        params={"name": settings.model.name},
        timeout=30.0,
    ).json()["registered_model"]
    assert {(a["alias"], a["version"]) for a in model["aliases"]} == {("champion", trained.version)}

    api = _api(settings)
    deployments = {d["name"]: d for d in _ok(api.post("/deployments/filter", json={}))}
    assert sorted(deployments) == ["backfill", "nightly", "weekly_train"]
    nightly = deployments["nightly"]
    assert [s["schedule"] for s in nightly["schedules"]] == [
        {"cron": "0 2 * * *", "timezone": "UTC", "day_or": True}
    ]
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert nightly["work_pool_name"] == "scorehouse-process"
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}
    ]
    assert [s["schedule"]["cron"] for s in deployments["weekly_train"]["schedules"]] == [
        "0 3 * * 0"
    ]
    assert deployments["backfill"]["schedules"] == []
    assert _ok(api.get("/work_pools/scorehouse-process"))["type"] == "process"

    # Two runs of the same night at once: the deployment's limit of 1 holds one back
    # (AwaitingConcurrencySlot) until the other has finished; then it reruns the day.
    created = [
        _ok(
            api.post(
                f"/deployments/{nightly['id']}/create_flow_run",
                json={"parameters": {"ds": END.isoformat()}},
            )
        )
        for _ in range(2)
    ]
    worker_log = stack.supervisor(settings).log_path("prefect-worker-scorehouse-process")
    runs = []
    for flow_run in created:
        run = _wait_for_run(api, flow_run["id"])
        assert run["state_type"] == "COMPLETED", (
            f"nightly run ended {run['state_type']}: {run['state']}\n"
            f"--- run logs ---\n{_run_logs(api, flow_run['id'])}\n"
            f"--- worker log ---\n{stack._tail(worker_log, 60)}"
        )
        assert run["parameters"]["ds"] == END.isoformat()
        assert run["name"] == f"nightly-{END.isoformat()}"  # renamed by the flow on start
        runs.append(run)
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert second["start_time"] >= first["end_time"]
    held = {
        s["name"] for s in _ok(api.get("/flow_run_states/", params={"flow_run_id": second["id"]}))
    }
    assert "AwaitingConcurrencySlot" in held, held
    run = first

    # The run scored every entity of END and published them as the live Redis generation.
    wh = Warehouse.from_settings(spark, settings)
    champion = wh.read(settings.tables.predictions, partitions={"ds": [END]}).where(
        F.col("model_role") == "champion"
    )
    entities = transforms.entities(feature_sql(), wh.read("raw_customers"), [END]).count()
    assert champion.count() == entities > 0
    client = redis.Redis.from_url(settings.redis.url)
    ns = settings.redis.namespace
    generation = client.get(keys.pointer_key(ns)).decode()
    stored = sum(
        client.hlen(key)
        for key in client.scan_iter(match=keys.score_pattern(ns, generation), count=1000)
    )
    client.close()
    assert stored == entities

    # The flow run page renders the run: its name and its Completed state.
    url = f"{stack.prefect_url(settings)}/runs/flow-run/{run['id']}"
    dom = _chromium(url, tmp_path / "chromium", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert run["name"] in dom.stdout
    assert "Completed" in dom.stdout
    png = tmp_path / "flow-run.png"
    shot = _chromium(url, tmp_path / "chromium", f"--screenshot={png}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    with Image.open(png) as image:
        assert image.size == (1400, 1000)
        # A rendered page has text, icons and a state badge; an empty or error page is nearly flat.
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
        assert len(colors) > 50
    print(f"flow run page screenshot: {png}")
