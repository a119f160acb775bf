"""The local stack behind `scorehouse up`, `scorehouse deploy` and `scorehouse down`.

`up` starts Redis (scorehouse.localstack) and a supervisord for the stack that runs the
Prefect server and the MLflow server; `deploy` creates the work pools, registers the
deployments of prefect.yaml and adds one Prefect worker per pool to that supervisord.
Its configuration, socket and the programs' logs live in `<home>/stack/`, so
`supervisorctl -c <home>/stack/supervisord.conf status` shows the stack. Each start waits
until the program answers its health check; supervisord restarts a program that crashes.
`down` shuts supervisord down (it stops each program's process group) and then ends what
the programs spawned in sessions of their own, such as a worker's flow runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

import httpx
import psutil
import yaml
from supervisor.xmlrpc import Faults, SupervisorTransport

from scorehouse import localstack, ports
from scorehouse.localstack import LocalStackError
from scorehouse.paths import REPO_ROOT
from scorehouse.settings import Settings

PREFECT_FILE = REPO_ROOT / "prefect.yaml"
STOP_WAIT_S = 30  # SIGTERM to a program's group, then SIGKILL after this many seconds
# Runs a program with exactly the environment in a JSON file: supervisord merges its own
# environment into a program's, and its `environment=` option cannot quote every value.
EXEC_WITH_ENV = (
    "import json, os, sys; os.execve(sys.argv[2], sys.argv[2:], json.load(open(sys.argv[1])))"
)


@dataclass(frozen=True)
class Status:
    """What `up`/`deploy`/`down` did to one service."""

    name: str
    state: str  # "started", "already running", "stopped", "not running", "registered"
    url: str = ""
    pid: int | None = None
    log: Path | None = None


@dataclass(frozen=True)
class Program:
    """One program of the stack's supervisord: its command, environment and health check."""

    name: str
    argv: list[str]
    url: str
    # Whether it answers, given when its process started: a worker counts only on
    # heartbeats newer than that.
    health: Callable[[datetime], bool]
    env: Mapping[str, str] | None = None  # None: supervisord's own environment
    cwd: Path | None = None
    port: int | None = None  # the port it listens on (None: a worker, which listens on none)
    host: str = "127.0.0.1"
    priority: int = 100  # supervisord stops the highest first: workers before servers


class Supervisor:
    """The stack's supervisord: its configuration, socket and logs in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.conf_path = directory / "supervisord.conf"
        self.socket_path = directory / "supervisor.sock"

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def env_path(self, name: str) -> Path:
        return self.directory / f"{name}.env.json"

    def _rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://localhost", transport=transport).supervisor

    def _state(self) -> str | None:
        """supervisord's state (RUNNING, SHUTDOWN), None when nothing answers on the socket."""
        try:
            return str(self._rpc().getState()["statename"])
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.SHUTDOWN_STATE:
                return "SHUTDOWN"
            raise
        except OSError:
            return None

    def running(self, timeout_s: float = 120.0) -> bool:
        """Whether supervisord runs; a shutdown under way (a `down` elsewhere) is waited out,
        so its programs are neither reported as running nor their ports as taken."""
        _wait_until(
            lambda: self._state() != "SHUTDOWN",
            timeout_s,
            lambda: f"supervisord of {self.conf_path} is still shutting down",
        )
        return self._state() == "RUNNING"

    def launch(self, programs: list[Program], timeout_s: float) -> None:
        """Write the configuration and start supervisord (it daemonizes) unless it runs."""
        if self.running(timeout_s):
            return
        self.write(programs)
        done = subprocess.run(
            [bin_path("supervisord"), "-c", str(self.conf_path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise LocalStackError(f"supervisord did not start:\n{done.stdout}{done.stderr}")
        _wait_until(
            lambda: self._state() == "RUNNING",
            timeout_s,
            lambda: (
                f"supervisord did not answer on {self.socket_path}; see "
                f"{self.log_path('supervisord')}:\n{_tail(self.log_path('supervisord'))}"
            ),
        )

    def write(self, programs: list[Program]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        sections = [self._header(), *(self._section(p) for p in programs)]
        self.conf_path.write_text("\n".join(sections))

    def _header(self) -> str:
        return f"""\
; Written by `scorehouse up` and `scorehouse deploy` from the settings.
[supervisord]
logfile={_conf(self.log_path("supervisord"))}
pidfile={_conf(self.directory / "supervisord.pid")}
childlogdir={_conf(self.directory)}

[unix_http_server]
file={_conf(self.socket_path)}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{_conf(self.socket_path)}
"""

    def _section(self, program: Program) -> str:
        argv = program.argv
        if program.env is not None:
            argv = [sys.executable, "-c", EXEC_WITH_ENV, str(self.env_path(program.name)), *argv]
        options = {
            "command": shlex.join(argv),
            "directory": program.cwd or self.directory,
            "priority": program.priority,
            "autostart": "false",  # `up` and `deploy` start it, after their checks
            "autorestart": "true",  # a crashed server comes back
            "startsecs": 3,  # one that exits sooner failed to start: retried 3 times
            "stopasgroup": "true",  # the MLflow server's uvicorn worker, a shell's child
            "killasgroup": "true",
            "stopwaitsecs": STOP_WAIT_S,
            "redirect_stderr": "true",
            "stdout_logfile": self.log_path(program.name),
            "stdout_logfile_maxbytes": "50MB",
        }
        lines = [f"{key}={_conf(value)}" for key, value in options.items()]
        return "\n".join([f"[program:{program.name}]", *lines, ""])

    def update(self, programs: list[Program]) -> None:
        """Rewrite the configuration and apply it to the running supervisord, as
        `supervisorctl update` does: new programs added, changed or dropped ones stopped."""
        self.write(programs)
        rpc = self._rpc()
        [[added, changed, removed]] = rpc.reloadConfig()
        for name in changed + removed:
            rpc.stopProcessGroup(name)
            rpc.removeProcessGroup(name)
        for name in added + changed:
            rpc.addProcessGroup(name)

    def info(self, name: str) -> dict[str, Any]:
        return dict(self._rpc().getProcessInfo(name))

    def start(self, program: Program, timeout_s: float) -> Status:
        """Start the program unless it runs already; wait until its health check passes."""
        log = self.log_path(program.name)
        info = self.info(program.name)
        if info["statename"] in ("STARTING", "RUNNING"):
            since = datetime.fromtimestamp(info["start"], UTC)
            _wait_until(lambda: program.health(since), timeout_s, lambda: _silent(program, log))
            return Status(program.name, "already running", program.url, info["pid"], log)
        _refuse_foreign(program)
        if program.env is not None:
            _write_private(self.env_path(program.name), json.dumps(dict(program.env)))
        since = datetime.now(UTC)
        try:
            self._rpc().startProcess(program.name, True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (Faults.ABNORMAL_TERMINATION, Faults.SPAWN_ERROR):
                raise
            self._exited(program)
        pid = self.info(program.name)["pid"]

        def ready() -> bool:
            if self.info(program.name)["pid"] != pid:
                self._exited(program)
            return program.health(since)

        try:
            _wait_until(ready, timeout_s, lambda: _silent(program, log))
        except BaseException:
            self.stop(program.name)
            raise
        return Status(program.name, "started", program.url, pid, log)

    def _exited(self, program: Program) -> NoReturn:
        self.stop(program.name)  # supervisord would retry it
        log = self.log_path(program.name)
        raise LocalStackError(f"{program.name} exited while starting; see {log}:\n{_tail(log)}")

    def stop(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):
            self._rpc().stopProcess(name, True)

    def down(self) -> dict[str, int | None]:
        """Shut supervisord down, then end what its programs spawned in sessions of their
        own (a signal to a program's group misses them, a flow run's Spark JVM among them).
        Each program with the PID it had; None: it was not running."""
        if not self.running():
            return {}
        rpc = self._rpc()
        supervisord = psutil.Process(rpc.getPID())
        programs = rpc.getAllProcessInfo()
        family: list[psutil.Process] = []
        for info in programs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if info["pid"]:
                    family += psutil.Process(info["pid"]).children(recursive=True)
        rpc.shutdown()
        # supervisord stops its programs one group after the other before it exits.
        wait_s = STOP_WAIT_S * (len(programs) + 1)
        try:
            supervisord.wait(wait_s)
        except psutil.TimeoutExpired as exc:
            raise LocalStackError(
                f"supervisord (pid {supervisord.pid}) still runs after {wait_s}s; see "
                f"{self.log_path('supervisord')}"
            ) from exc
        _end(family)
        return {info["name"]: info["pid"] or None for info in programs}


def _end(processes: list[psutil.Process]) -> None:
    """SIGTERM the processes that still live, SIGKILL those alive `STOP_WAIT_S` later."""
    alive = [p for p in processes if _alive(p)]
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(alive, timeout=STOP_WAIT_S)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie waiting for a parent that is not us."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _refuse_foreign(program: Program) -> None:
    """A port another program holds is an error that names that program."""
    if program.port is not None and ports.port_busy(program.host, program.port):
        holders = sorted(ports.listeners(program.port))
        who = ", ".join(ports.describe(p) for p in holders) or "a process of another user"
        raise LocalStackError(
            f"{program.name}: port {program.port} on {program.host} is held by another program "
            f"({who}); stop it or choose another port in the `stack` settings"
        )
    if program.health(datetime.now(UTC)):
        raise LocalStackError(
            f"{program.name}: something that scorehouse did not start already answers at "
            f"{program.url}; stop it or choose another port in the `stack` settings"
        )


def _silent(program: Program, log: Path) -> str:
    return f"{program.name} did not answer at {program.url}; see {log}:\n{_tail(log)}"


def _conf(value: object) -> str:
    """A value for supervisord's configuration, where `%(name)s` would be expanded."""
    text = str(value)
    if "\n" in text:
        raise LocalStackError(f"a line break cannot go into supervisord's configuration: {text!r}")
    return text.replace("%", "%%")


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: an environment may hold secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


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


def supervisor(settings: Settings) -> Supervisor:
    return Supervisor(state_dir(settings))


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


def bin_path(name: str) -> str:
    """A console script of this virtualenv (prefect, mlflow, supervisord), next to the running Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise LocalStackError(f"{path} is missing: install the project (`make setup`)")
    return str(path)


def prefect_server(settings: Settings) -> Program:
    health = f"{prefect_api_url(settings)}/health"
    return Program(
        name="prefect-server",
        argv=[
            *(bin_path("prefect"), "server", "start", "--host", settings.stack.host),
            *("--port", str(settings.stack.prefect_port), "--analytics-off"),
        ],
        env=prefect_env(settings),
        url=prefect_url(settings),
        health=lambda _: http_ok(health),
        port=settings.stack.prefect_port,
        host=settings.stack.host,
        priority=100,
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


def mlflow_server(settings: Settings) -> Program:
    artifacts = settings.mlflow.artifact_location.resolve()
    env = dict(os.environ)
    # The job runner is unused here and triples the server's memory (about 1.9 GB vs 0.5 GB).
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    health = f"{mlflow_url(settings)}/health"
    return Program(
        name="mlflow-server",
        argv=[
            *(bin_path("mlflow"), "server", "--backend-store-uri", mlflow_backend_uri(settings)),
            *("--default-artifact-root", artifacts.as_uri(), "--host", settings.stack.host),
            *("--port", str(settings.stack.mlflow_port), "--workers", "1"),
        ],
        env=env,
        url=mlflow_url(settings),
        health=lambda _: http_ok(health),
        port=settings.stack.mlflow_port,
        host=settings.stack.host,
        priority=200,
    )


def servers(settings: Settings) -> list[Program]:
    return [prefect_server(settings), mlflow_server(settings)]


def _redis_port(settings: Settings) -> int:
    return urlparse(settings.redis.url).port or 6379


def _redis_dir(settings: Settings) -> Path:
    # The same directory as the demo's server, so `up` and `make demo` share one Redis.
    return Path(settings.home).resolve() / "redis"


# --- up / down ---


def up(settings: Settings) -> list[Status]:
    """Start Redis, then supervisord with the Prefect and MLflow servers, or report them running."""
    timeout = settings.stack.startup_timeout_s
    redis = localstack.RedisServer(_redis_dir(settings), port=_redis_port(settings))
    redis_state = "already running" if redis.ping() else "started"
    # localstack.up reuses a server that answers (the demo's, say) and starts one otherwise.
    redis = localstack.up(_redis_dir(settings), _redis_port(settings))
    statuses = [Status("redis-server", redis_state, redis.url, redis.pid, redis.log_path)]
    programs = servers(settings)
    stack = supervisor(settings)
    stack.launch(programs, timeout)
    return statuses + [stack.start(program, timeout) for program in programs]


def down(settings: Settings) -> list[Status]:
    """Stop the worker(s) and servers (supervisord with them) and Redis that `up`/`deploy` started."""
    stack = supervisor(settings)
    stopped = stack.down()
    prefix = "prefect-worker-"
    pools = sorted(name.removeprefix(prefix) for name in stopped if name.startswith(prefix))
    statuses = [
        Status(p.name, "stopped", p.url, pid, stack.log_path(p.name))
        if (pid := stopped.get(p.name))
        else Status(p.name, "not running")
        for p in [*(worker(settings, pool) for pool in pools), *reversed(servers(settings))]
    ]
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


def worker(settings: Settings, pool: str, env: Mapping[str, str] | None = None) -> Program:
    api = prefect_api_url(settings)

    def online(since: datetime) -> bool:
        try:
            response = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and worker_online(
            response.json(), worker_name(pool), since
        )

    return Program(
        name=f"prefect-worker-{pool}",
        argv=[
            *(bin_path("prefect"), "worker", "start", "--pool", pool, "--type", "process"),
            *("--name", worker_name(pool)),
        ],
        env=prefect_env(settings, env),
        cwd=REPO_ROOT,
        url=f"{prefect_url(settings)}/work-pools/work-pool/{pool}",
        health=online,
        priority=300,
    )


def _prefect(settings: Settings, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("prefect"), "--no-prompt", *args],
        env=prefect_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _register(settings: Settings, prefect_file: Path, timeout: float) -> list[Status]:
    """Create the missing work pools and register prefect.yaml's deployments."""
    api = prefect_api_url(settings)
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
    statuses: list[Status] = []
    for deployment in read_prefect_file(prefect_file)["deployments"]:
        name = deployment["name"]
        if name not in registered:
            raise LocalStackError(f"deployment {name} is not on the server after `prefect deploy`")
        url = f"{prefect_url(settings)}/deployments/deployment/{registered[name]}"
        statuses.append(Status(f"deployment {name}", "registered", url))
    return statuses


def deploy(
    settings: Settings,
    *,
    prefect_file: Path = PREFECT_FILE,
    worker_env: Mapping[str, str] | None = None,
) -> list[Status]:
    """Create the work pools, register prefect.yaml's deployments, run one worker per pool
    under the supervisord of `up`.

    `worker_env` is the environment the flow runs inherit (default: this process's).
    """
    stack = supervisor(settings)
    if not http_ok(f"{prefect_api_url(settings)}/health") or not stack.running():
        raise LocalStackError(
            f"no Prefect server of `scorehouse up` answers at {prefect_url(settings)}: "
            "run `scorehouse up` first"
        )
    timeout = settings.stack.startup_timeout_s
    statuses = _register(settings, prefect_file, timeout)
    workers = [worker(settings, pool, worker_env) for pool in work_pools(prefect_file)]
    stack.update([*servers(settings), *workers])
    return statuses + [stack.start(w, timeout) for w in workers]
