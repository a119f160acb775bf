"""scorehouse.stack under a real supervisord: idempotent start, health waits, restart after a
crash, group stop on `down`, errors that name what is in the way.

Real processes (a Python HTTP server on a free loopback port) stand in for the servers;
one test restarts a worker against a real Prefect server, and the whole stack (MLflow too)
runs in tests/e2e/test_prefect_deployments.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest

from scorehouse import localstack, ports, stack
from scorehouse.localstack import LocalStackError
from scorehouse.settings import load_settings


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[stack.Supervisor]:
    """The stack's supervisord in a temp directory, shut down afterwards whatever happened."""
    supervisor = stack.Supervisor(tmp_path / "stack")
    try:
        yield supervisor
    finally:
        supervisor.down()


def _http_server(port: int, *argv_prefix: str, name: str = "web") -> stack.Program:
    url = f"http://127.0.0.1:{port}"
    return stack.Program(
        name=name,
        argv=[*argv_prefix, sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        url=url,
        health=lambda _: stack.http_ok(url),
        port=port,
    )


def _children(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children()]


def _wait_for(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_start_is_idempotent_and_down_ends_the_process_group(
    supervisor: stack.Supervisor,
) -> None:
    # The shell stays the group leader and the server is its child: down must end both.
    web = _http_server(localstack.free_port(), "sh", "-c", 'exec "$@" & wait', "sh")
    supervisor.launch([web], timeout_s=60)
    started = supervisor.start(web, timeout_s=60)
    assert (started.name, started.state, started.url) == ("web", "started", web.url)
    assert started.log == supervisor.log_path("web")
    (child,) = _children(started.pid)  # type: ignore[arg-type]

    supervisor.launch([web], timeout_s=60)  # `up` again: supervisord runs already
    again = supervisor.start(web, timeout_s=60)
    assert (again.state, again.pid) == ("already running", started.pid)
    status = subprocess.run(
        [Path(sys.executable).parent / "supervisorctl", "-c", supervisor.conf_path, "status"],
        capture_output=True,
        text=True,
    )
    assert status.stdout.split()[:4] == ["web", "RUNNING", "pid", f"{started.pid},"]

    assert supervisor.down() == {"web": started.pid}
    assert not localstack.pid_alive(started.pid)  # type: ignore[arg-type]
    assert not localstack.pid_alive(child)
    assert not web.health(datetime.now(UTC))
    assert not ports.port_busy("127.0.0.1", web.port)  # type: ignore[arg-type]
    assert supervisor.down() == {}


def test_down_ends_a_descendant_in_a_session_of_its_own(supervisor: stack.Supervisor) -> None:
    # Like a flow run that the Prefect worker starts with start_new_session.
    new_session = (
        sys.executable,
        "-c",
        "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])",
    )
    web = _http_server(localstack.free_port(), "sh", "-c", '"$@" & wait', "sh", *new_session)
    supervisor.launch([web], timeout_s=60)
    started = supervisor.start(web, timeout_s=60)
    (child,) = _children(started.pid)  # type: ignore[arg-type]
    assert os.getsid(child) != os.getsid(started.pid)  # type: ignore[arg-type]

    assert supervisor.down() == {"web": started.pid}
    assert not localstack.pid_alive(started.pid)  # type: ignore[arg-type]
    assert not localstack.pid_alive(child)
    assert not web.health(datetime.now(UTC))


def test_a_crashed_service_is_restarted_by_the_supervisor(supervisor: stack.Supervisor) -> None:
    web = _http_server(localstack.free_port())
    supervisor.launch([web], timeout_s=60)
    started = supervisor.start(web, timeout_s=60)
    os.kill(started.pid, signal.SIGKILL)  # type: ignore[arg-type]

    def back() -> bool:
        info = supervisor.info("web")
        return info["statename"] == "RUNNING" and info["pid"] not in (0, started.pid)

    _wait_for(back)
    assert web.health(datetime.now(UTC))
    assert supervisor.start(web, timeout_s=60).state == "already running"


# An HTTP server that keeps serving for 2 s after SIGTERM, as a server finishing its
# requests does: its port stays taken while `down` waits for it.
SLOW_TO_STOP = """
import http.server, os, signal, sys, threading
signal.signal(signal.SIGTERM, lambda *_: threading.Timer(2.0, os._exit, (0,)).start())
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                         http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""


def test_down_returns_once_the_port_is_free(supervisor: stack.Supervisor, tmp_path: Path) -> None:
    port = localstack.free_port()
    script = tmp_path / "slow_to_stop.py"
    script.write_text(SLOW_TO_STOP)
    web = stack.Program(
        name="web",
        argv=[sys.executable, str(script), str(port)],
        url=f"http://127.0.0.1:{port}",
        health=lambda _: stack.http_ok(f"http://127.0.0.1:{port}"),
        port=port,
    )
    supervisor.launch([web], timeout_s=60)
    started = supervisor.start(web, timeout_s=60)
    began = time.monotonic()
    supervisor.down()
    assert time.monotonic() - began >= 1.5  # it waited for the server to finish
    assert not localstack.pid_alive(started.pid)  # type: ignore[arg-type]
    assert not ports.port_busy("127.0.0.1", port)


def test_a_port_held_by_another_program_is_an_error_that_names_it(
    supervisor: stack.Supervisor,
) -> None:
    with socket.socket() as holder:  # listens but never answers HTTP
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        web = _http_server(port)
        supervisor.launch([web], timeout_s=60)
        began = time.monotonic()
        with pytest.raises(LocalStackError) as err:
            supervisor.start(web, timeout_s=60)
    assert time.monotonic() - began < 10
    message = str(err.value)
    assert f"web: port {port} on 127.0.0.1 is held by another program (pid {os.getpid()}" in message
    assert supervisor.info("web")["statename"] == "STOPPED"


def test_something_answering_that_we_did_not_start_is_an_error(
    supervisor: stack.Supervisor,
) -> None:
    port = localstack.free_port()
    theirs = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Without its port: the health check alone finds it.
        ours = replace(_http_server(port), port=None)
        _wait_for(lambda: ours.health(datetime.now(UTC)))
        supervisor.launch([ours], timeout_s=60)
        with pytest.raises(LocalStackError, match=r"web: something that scorehouse did not start"):
            supervisor.start(ours, timeout_s=5)
    finally:
        theirs.terminate()
        theirs.wait()


def test_a_service_that_exits_while_starting_reports_its_log(
    supervisor: stack.Supervisor,
) -> None:
    broken = stack.Program(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('bad flag --nope'); sys.exit(3)"],
        url="http://127.0.0.1:9",
        health=lambda _: False,
        env={"PATH": os.environ["PATH"]},
    )
    supervisor.launch([broken], timeout_s=60)
    with pytest.raises(
        LocalStackError,
        match=r"(?s)broken exited while starting; see .*broken.log:\nbad flag --nope",
    ):
        supervisor.start(broken, timeout_s=30)
    assert supervisor.info("broken")["statename"] == "STOPPED"


def test_a_program_runs_with_exactly_its_environment(supervisor: stack.Supervisor) -> None:
    out = supervisor.directory / "env.json"
    dump = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w')); input()"
    env = {"ODD": "a,b \"c\" 'd' %(here)s ; # x\nnext line", "SECRET": "s"}
    program = stack.Program(
        name="env",
        argv=[sys.executable, "-c", dump],
        url="",
        health=lambda _: out.exists(),
        env=env,
    )
    supervisor.launch([program], timeout_s=60)
    assert supervisor.start(program, timeout_s=60).state == "started"
    _wait_for(lambda: out.stat().st_size > 0)
    seen = json.loads(out.read_text())
    # Python itself may add LC_CTYPE (its C locale coercion); nothing of supervisord's.
    assert {k: v for k, v in seen.items() if k != "LC_CTYPE"} == env
    assert supervisor.env_path("env").stat().st_mode & 0o777 == 0o600


def test_deploy_without_a_server_says_to_run_up(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_HOME": str(tmp_path),
            "SCOREHOUSE_STACK__PREFECT_PORT": str(localstack.free_port()),
        }
    )
    with pytest.raises(LocalStackError, match=r"no Prefect server .*answers at .*scorehouse up"):
        stack.deploy(settings)


def test_work_pools_come_from_prefect_yaml(tmp_path: Path) -> None:
    assert stack.work_pools() == ["scorehouse-process"]
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n  - name: nightly\n    entrypoint: src/scorehouse/flows.py:nightly\n"
    )
    with pytest.raises(
        LocalStackError, match=r"prefect.yaml: deployment 'nightly' has no work_pool"
    ):
        stack.work_pools(bad)


def test_mlflow_server_gets_an_absolute_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = load_settings(environ={"SCOREHOUSE_MLFLOW__TRACKING_URI": "sqlite:///st/ml.db"})
    assert stack.mlflow_backend_uri(relative) == f"sqlite:///{tmp_path}/st/ml.db"
    assert (tmp_path / "st").is_dir()
    absolute = load_settings(environ={"SCOREHOUSE_MLFLOW__TRACKING_URI": "sqlite:////srv/ml.db"})
    assert stack.mlflow_backend_uri(absolute) == "sqlite:////srv/ml.db"
    remote = load_settings(environ={"SCOREHOUSE_MLFLOW__TRACKING_URI": "http://mlflow:5000"})
    assert stack.mlflow_backend_uri(remote) == "http://mlflow:5000"


def test_http_ok_is_false_when_nothing_listens() -> None:
    assert not stack.http_ok(f"http://127.0.0.1:{localstack.free_port()}/")


def test_a_worker_counts_as_running_only_after_heartbeats_of_its_own() -> None:
    # Prefect lists a worker stopped a minute ago as ONLINE for 90 s more.
    started = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    beat = (started - timedelta(seconds=40)).isoformat()
    stale = [{"name": "scorehouse-pool", "status": "ONLINE", "last_heartbeat_time": beat}]
    assert not stack.worker_online(stale, "scorehouse-pool", started)
    fresh = (started + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    other = {"name": "ProcessWorker 1f3a", "status": "ONLINE", "last_heartbeat_time": fresh}
    assert not stack.worker_online([*stale, other], "scorehouse-pool", started)
    ours = {"name": "scorehouse-pool", "status": "ONLINE", "last_heartbeat_time": fresh}
    assert stack.worker_online([*stale, other, ours], "scorehouse-pool", started)
    offline = {**ours, "status": "OFFLINE"}
    assert not stack.worker_online([offline], "scorehouse-pool", started)


def test_down_then_deploy_at_once_starts_the_worker_although_prefect_lists_the_old_one(
    tmp_path: Path,
) -> None:
    # A real Prefect server: it keeps the stopped worker ONLINE until its heartbeats lapse.
    settings = load_settings(
        environ={
            "SCOREHOUSE_HOME": str(tmp_path),
            "SCOREHOUSE_STACK__PREFECT_PORT": str(localstack.free_port()),
        }
    )
    supervisor = stack.supervisor(settings)
    server, worker = stack.prefect_server(settings), stack.worker(settings, "p")
    assert worker.argv[-2:] == ["--name", "scorehouse-p"]
    try:
        supervisor.launch([server, worker], timeout_s=60)
        supervisor.start(server, timeout_s=180)
        made = stack._prefect(
            settings, "work-pool", "create", "p", "--type", "process", timeout_s=120
        )
        assert made.returncode == 0, made.stderr
        first = supervisor.start(worker, timeout_s=120)
        assert first.state == "started"
        assert set(supervisor.down()) == {"prefect-server", "prefect-worker-p"}

        supervisor.launch([server, worker], timeout_s=60)
        supervisor.start(server, timeout_s=180)
        listed = httpx.post(
            f"{stack.prefect_api_url(settings)}/work_pools/p/workers/filter", json={}
        )
        assert [(w["name"], w["status"]) for w in listed.json()] == [("scorehouse-p", "ONLINE")]
        assert not worker.health(datetime.now(UTC))  # that ONLINE is the old worker's
        again = supervisor.start(worker, timeout_s=120)
        assert again.state == "started" and again.pid != first.pid
    finally:
        supervisor.down()
    assert not ports.port_busy("127.0.0.1", settings.stack.prefect_port)
