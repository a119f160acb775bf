"""The local stack behind `scorehouse up`, `scorehouse deploy` and `scorehouse down`.

`up` starts Redis (scorehouse.localstack), the Prefect server and the MLflow server;
`deploy` creates the work pool, registers the deployments of prefect.yaml and starts a
worker. Every process runs in the background in its own session (so `down` can stop
it and whatever it spawned through one process group), with its PID file and log
under `<home>/stack/`. Each start waits until the process answers its health check.

`down` waits until its processes have exited and their ports are free; while it runs, a
`<name>.stopping` file lists the processes it ends, so an `up` meanwhile waits for them
instead of taking the port of a server that is shutting down for someone else's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil
import yaml

from scorehouse import localstack, ports
from scorehouse.localstack import LocalStackError
from scorehouse.paths import REPO_ROOT
from scorehouse.settings import Settings

PREFECT_FILE = REPO_ROOT / "prefect.yaml"


@dataclass(frozen=True)
class Status:
    """What `up`/`deploy`/`down` did to one service."""

    name: str
    state: str  # "started", "already running", "stopped", "not running"
    url: str = ""
    pid: int | None = None
    log: Path | None = None


@dataclass(frozen=True)
class Service:
    """One background process: its command, environment, PID file, log and health check."""

    name: str
    argv: list[str]
    state_dir: Path
    url: str
    health: Callable[[], bool]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    # A word that must appear in the process's command line before we signal the PID
    # in the file: after a reboot that PID may belong to someone else.
    marker: str = ""
    port: int | None = None  # the port it listens on (None: a worker, which listens on none)
    host: str = "127.0.0.1"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def stopping_path(self) -> Path:
        return self.state_dir / f"{self.name}.stopping"

    def pid(self) -> int | None:
        """The PID from the PID file when that process is alive and ours, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
            process = psutil.Process(pid)
            if not _alive(process):
                return None
            cmdline = " ".join(process.cmdline())
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
            return None
        except psutil.AccessDenied:
            return None  # another user's process now holds that PID
        return pid if self.marker in cmdline else None

    def start(self, timeout_s: float) -> Status:
        """Start the process unless it runs already; wait until its health check passes."""
        self._await_release(timeout_s)
        pid = self.pid()
        if pid is not None:
            _wait_until(self.health, timeout_s, self._not_answering)
            return Status(self.name, "already running", self.url, pid, self.log_path)
        self._refuse_foreign()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{process.pid}\n")

        def ready() -> bool:
            if process.poll() is not None:
                raise LocalStackError(
                    f"{self.name} exited with code {process.returncode} while starting; "
                    f"see {self.log_path}:\n{_tail(self.log_path)}"
                )
            return self.health()

        try:
            _wait_until(ready, timeout_s, self._not_answering)
        except BaseException:
            self.stop()
            raise
        return Status(self.name, "started", self.url, process.pid, self.log_path)

    def stop(self, timeout_s: float = 30.0) -> Status:
        """SIGTERM the process, its group and its descendants; SIGKILL what is left after
        `timeout_s`; return once they have exited and the port is free."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return Status(self.name, "not running")
        # Descendants too: a worker starts each flow run in a session of its own, which a
        # signal to the worker's group would miss (and the run's Spark JVM with it).
        family = _family(pid)
        # PID and start time: a PID alone may be reused after a reboot.
        record = "".join(f"{p.pid} {p.create_time()}\n" for p in family)
        self.stopping_path.write_text(record)
        alive = _end(pid, family, timeout_s)
        _remove_if(self.pid_path, f"{pid}\n")
        if not alive:
            self._await_port_free(timeout_s)
            _remove_if(self.stopping_path, record)
        return Status(self.name, "stopped", self.url, pid, self.log_path)

    def _await_release(self, timeout_s: float) -> None:
        """Wait while the processes of a `stop` under way (its .stopping file) still live."""
        try:
            lines = self.stopping_path.read_text().splitlines()
        except FileNotFoundError:
            return
        family = [tuple(line.split()) for line in lines if len(line.split()) == 2]

        def exited() -> bool:
            return not [p for p, at in family if _same_process_lives(int(p), float(at))]

        _wait_until(
            exited,
            timeout_s,
            lambda: f"{self.name}: processes {[p for p, _ in family]} of its last run still live",
        )
        self.stopping_path.unlink(missing_ok=True)

    def _await_port_free(self, timeout_s: float) -> None:
        if self.port is None:
            return
        deadline = time.monotonic() + timeout_s
        while ports.port_busy(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _refuse_foreign(self) -> None:
        """A port another program holds is an error that names that program."""
        if self.port is not None and ports.port_busy(self.host, self.port):
            holders = sorted(ports.listeners(self.port))
            who = ", ".join(ports.describe(p) for p in holders) or "a process of another user"
            raise LocalStackError(
                f"{self.name}: port {self.port} on {self.host} is held by another program "
                f"({who}); stop it or choose another port in the `stack` settings"
            )
        if self.health():
            raise LocalStackError(
                f"{self.name}: something that scorehouse did not start already answers at "
                f"{self.url}; stop it or choose another port in the `stack` settings"
            )

    def _not_answering(self) -> str:
        return f"{self.name} did not answer at {self.url}; see {self.log_path}:\n{_tail(self.log_path)}"


def _family(pid: int) -> list[psutil.Process]:
    """The process and every live descendant (children first)."""
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _end(pid: int, family: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """SIGTERM `pid`'s group and `family`, then SIGKILL what still lives after `timeout_s`;
    what still lives after that (waited for, so our own children are reaped)."""
    alive = family
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        # The process leads its own session (start_new_session): its PID is the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)
        _, alive = psutil.wait_procs(alive, timeout=wait_s)
        alive = [p for p in alive if _alive(p)]
        if not alive:
            break
    return alive


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie waiting for a parent that is not us."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _same_process_lives(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        return _alive(process) and process.create_time() == started
    except psutil.NoSuchProcess:
        return False


def _remove_if(path: Path, content: str) -> None:
    """Remove `path` if it still holds `content`: a `start` meanwhile may have rewritten it."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == content:
            path.unlink()


def _wait_until(check: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise LocalStackError(f"after {timeout_s:.0f}s: {why()}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --- what runs where ---


def state_dir(settings: Settings) -> Path:
    return Path(settings.home).resolve() / "stack"


def prefect_url(settings: Settings) -> str:
    return f"http://{settings.stack.host}:{settings.stack.prefect_port}"


def prefect_api_url(settings: Settings) -> str:
    return f"{prefect_url(settings)}/api"


def mlflow_url(settings: Settings) -> str:
    return f"http://{settings.stack.host}:{settings.stack.mlflow_port}"


def flow_api_url(
    settings: Settings, configured: str | None, answers: Callable[[str], bool] = http_ok
) -> str | None:
    """The Prefect API a flow run started from the CLI reports to, when it must be set: the
    server of `scorehouse up` if it answers and no API is `configured` (PREFECT_API_URL or
    a Prefect profile). None: leave Prefect as it is (that API, or a temporary server)."""
    if configured:
        return None
    api = prefect_api_url(settings)
    return api if answers(f"{api}/health") else None


def prefect_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Prefect process of the stack: project-local home, this server."""
    env = dict(os.environ if base is None else base)
    env.update(
        PREFECT_HOME=str(Path(settings.home).resolve() / "prefect"),
        PREFECT_API_URL=prefect_api_url(settings),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def _bin(name: str) -> str:
    """A console script of this virtualenv (prefect, mlflow), next to the running Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise LocalStackError(f"{path} is missing: install the project (`make setup`)")
    return str(path)


def prefect_server(settings: Settings) -> Service:
    return Service(
        name="prefect-server",
        argv=[
            _bin("prefect"),
            "server",
            "start",
            "--host",
            settings.stack.host,
            "--port",
            str(settings.stack.prefect_port),
            "--analytics-off",
        ],
        env=prefect_env(settings),
        state_dir=state_dir(settings),
        url=prefect_url(settings),
        health=lambda: http_ok(f"{prefect_api_url(settings)}/health"),
        marker="prefect",
        port=settings.stack.prefect_port,
        host=settings.stack.host,
    )


def mlflow_backend_uri(settings: Settings) -> str:
    """The configured tracking URI with a relative SQLite path made absolute (the server's cwd differs)."""
    uri = settings.mlflow.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri.removeprefix(prefix)).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


def mlflow_server(settings: Settings) -> Service:
    artifacts = settings.mlflow.artifact_location.resolve()
    env = dict(os.environ)
    # The job runner is unused here and triples the server's memory (about 1.9 GB vs 0.5 GB).
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return Service(
        name="mlflow-server",
        argv=[
            _bin("mlflow"),
            "server",
            "--backend-store-uri",
            mlflow_backend_uri(settings),
            "--default-artifact-root",
            artifacts.as_uri(),
            "--host",
            settings.stack.host,
            "--port",
            str(settings.stack.mlflow_port),
            "--workers",
            "1",
        ],
        env=env,
        state_dir=state_dir(settings),
        url=mlflow_url(settings),
        health=lambda: http_ok(f"{mlflow_url(settings)}/health"),
        marker="mlflow",
        port=settings.stack.mlflow_port,
        host=settings.stack.host,
    )


def _redis_port(settings: Settings) -> int:
    return urlparse(settings.redis.url).port or 6379


def _redis_dir(settings: Settings) -> Path:
    # The same directory as the demo's server, so `up` and `make demo` share one Redis.
    return Path(settings.home).resolve() / "redis"


# --- up / down ---


def up(settings: Settings) -> list[Status]:
    """Start Redis, the Prefect server and the MLflow server, or report them running."""
    timeout = settings.stack.startup_timeout_s
    redis = localstack.RedisServer(_redis_dir(settings), port=_redis_port(settings))
    redis_state = "already running" if redis.ping() else "started"
    # localstack.up reuses a server that answers (the demo's, say) and starts one otherwise.
    redis = localstack.up(_redis_dir(settings), _redis_port(settings))
    statuses = [Status("redis-server", redis_state, redis.url, redis.pid, redis.log_path)]
    statuses.append(prefect_server(settings).start(timeout))
    statuses.append(mlflow_server(settings).start(timeout))
    return statuses


def down(settings: Settings) -> list[Status]:
    """Stop the worker(s), the servers and Redis that `up`/`deploy` started (by PID file)."""
    statuses = [worker(settings, pool).stop() for pool in _worker_pools(settings)]
    statuses.append(mlflow_server(settings).stop())
    statuses.append(prefect_server(settings).stop())
    redis = localstack.RedisServer(_redis_dir(settings), port=_redis_port(settings))
    pid = redis._read_pid()
    alive = pid is not None and localstack.pid_alive(pid)
    localstack.down(_redis_dir(settings), _redis_port(settings))
    statuses.append(Status("redis-server", "stopped" if alive else "not running", redis.url, pid))
    return statuses


# --- deploy ---


def read_prefect_file(path: Path = PREFECT_FILE) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise LocalStackError(f"{path} does not exist") from exc
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list):
        raise LocalStackError(f"{path}: expected a mapping with a `deployments` list")
    return data


def work_pools(path: Path = PREFECT_FILE) -> list[str]:
    """The work pools the deployments of prefect.yaml name (the file is the one source)."""
    pools: list[str] = []
    for deployment in read_prefect_file(path)["deployments"]:
        name = (deployment.get("work_pool") or {}).get("name")
        if not name:
            raise LocalStackError(
                f"{path}: deployment {deployment.get('name')!r} has no work_pool.name"
            )
        if name not in pools:
            pools.append(name)
    return pools


def _worker_pools(settings: Settings) -> list[str]:
    """Pools with a worker PID file (what `deploy` started), whatever prefect.yaml says now."""
    directory = state_dir(settings)
    prefix, suffix = "prefect-worker-", ".pid"
    return sorted(p.name[len(prefix) : -len(suffix)] for p in directory.glob(f"{prefix}*{suffix}"))


def worker_name(pool: str) -> str:
    return f"scorehouse-{pool}"


def worker_online(workers: list[dict[str, Any]], name: str, since: datetime) -> bool:
    """Whether the worker `name` has reported itself ONLINE since `since`.

    Prefect keeps a stopped worker ONLINE until it misses three heartbeats (90 s by
    default), so a worker just stopped by `down` must not count as this one running.
    """
    return any(
        w.get("name") == name
        and w.get("status") == "ONLINE"
        and datetime.fromisoformat(w.get("last_heartbeat_time") or "0001-01-01T00:00:00+00:00")
        >= since
        for w in workers
    )


def worker(settings: Settings, pool: str, env: Mapping[str, str] | None = None) -> Service:
    api = prefect_api_url(settings)

    def online() -> bool:
        try:  # the PID file is written as the process starts: its heartbeats come later
            since = datetime.fromtimestamp(service.pid_path.stat().st_mtime).astimezone()
            response = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=2.0)
        except (FileNotFoundError, httpx.HTTPError):
            return False
        return response.status_code == 200 and worker_online(
            response.json(), worker_name(pool), since
        )

    service = Service(
        name=f"prefect-worker-{pool}",
        argv=[
            *(_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process"),
            *("--name", worker_name(pool)),
        ],
        env=prefect_env(settings, env),
        cwd=REPO_ROOT,
        state_dir=state_dir(settings),
        url=f"{prefect_url(settings)}/work-pools/work-pool/{pool}",
        health=online,
        marker="prefect",
    )
    return service


def _prefect(settings: Settings, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_bin("prefect"), "--no-prompt", *args],
        env=prefect_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def deploy(
    settings: Settings,
    *,
    prefect_file: Path = PREFECT_FILE,
    worker_env: Mapping[str, str] | None = None,
) -> list[Status]:
    """Create the work pools, register prefect.yaml's deployments, start one worker per pool.

    `worker_env` is the environment the flow runs inherit (default: this process's).
    """
    api = prefect_api_url(settings)
    if not http_ok(f"{api}/health"):
        raise LocalStackError(
            f"no Prefect server answers at {prefect_url(settings)}: run `scorehouse up` first"
        )
    timeout = settings.stack.startup_timeout_s
    statuses: list[Status] = []
    for pool in work_pools(prefect_file):
        if httpx.get(f"{api}/work_pools/{pool}", timeout=5.0).status_code == 404:
            done = _prefect(
                settings, "work-pool", "create", pool, "--type", "process", timeout_s=timeout
            )
            if done.returncode != 0:
                raise LocalStackError(
                    f"creating work pool {pool} failed:\n{done.stdout}\n{done.stderr}"
                )
    done = _prefect(
        settings,
        "deploy",
        "--all",
        "--prefect-file",
        str(prefect_file.resolve()),
        timeout_s=timeout * 3,
    )
    if done.returncode != 0:
        raise LocalStackError(
            f"`prefect deploy --all` of {prefect_file} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    registered = {
        d["name"]: d["id"]
        for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10.0).json()
    }
    for deployment in read_prefect_file(prefect_file)["deployments"]:
        name = deployment["name"]
        if name not in registered:
            raise LocalStackError(f"deployment {name} is not on the server after `prefect deploy`")
        url = f"{prefect_url(settings)}/deployments/deployment/{registered[name]}"
        statuses.append(Status(f"deployment {name}", "registered", url))
    for pool in work_pools(prefect_file):
        statuses.append(worker(settings, pool, worker_env).start(timeout))
    return statuses
