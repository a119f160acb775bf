"""scorehouse.stack's background processes: PID files, health waits, idempotent start, group stop.

Real processes (a Python HTTP server on a free loopback port) stand in for the servers;
one test restarts a worker against a real Prefect server, and the whole stack (MLflow too)
runs in tests/e2e/test_prefect_deployments.py.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from scorehouse import localstack, ports, stack
from scorehouse.localstack import LocalStackError
from scorehouse.settings import load_settings


def _http_server(
    directory: Path, port: int, argv_prefix: tuple[str, ...] = (), *, with_port: bool = False
) -> stack.Service:
    url = f"http://127.0.0.1:{port}"
    return stack.Service(
        name="web",
        argv=[*argv_prefix, sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        state_dir=directory,
        url=url,
        health=lambda: stack.http_ok(url),
        marker="http.server",
        port=port if with_port else None,
    )


# An HTTP server that keeps serving for 2 s after SIGTERM, as a server finishing its
# requests does: its port stays taken while `down` waits for it.
SLOW_TO_STOP = """
import http.server, os, signal, sys, threading
signal.signal(signal.SIGTERM, lambda *_: threading.Timer(2.0, os._exit, (0,)).start())
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                         http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""


def _slow_to_stop(directory: Path, port: int) -> stack.Service:
    url = f"http://127.0.0.1:{port}"
    return stack.Service(
        name="web",
        argv=[sys.executable, "-c", SLOW_TO_STOP, str(port)],
        state_dir=directory,
        url=url,
        health=lambda: stack.http_ok(url),
        marker="http.server",
        port=port,
    )


def test_start_is_idempotent_and_stop_ends_the_process_group(tmp_path: Path) -> None:
    # The shell stays the group leader and the server is its child: stop must end both.
    service = _http_server(tmp_path, localstack.free_port(), ("sh", "-c", 'exec "$@" & wait', "sh"))
    started = service.start(timeout_s=60)
    assert (started.name, started.state, started.url) == ("web", "started", service.url)
    assert service.pid_path.read_text().strip() == str(started.pid)
    children = Path(f"/proc/{started.pid}/task/{started.pid}/children").read_text().split()
    assert len(children) == 1

    again = service.start(timeout_s=60)
    assert (again.state, again.pid) == ("already running", started.pid)

    stopped = service.stop()
    assert (stopped.state, stopped.pid) == ("stopped", started.pid)
    assert not localstack.pid_alive(started.pid)
    assert not localstack.pid_alive(int(children[0]))
    assert not service.pid_path.exists()
    assert not service.health()
    assert service.stop().state == "not running"


def test_stop_ends_a_descendant_in_a_session_of_its_own(tmp_path: Path) -> None:
    # Like a flow run that the Prefect worker starts with start_new_session.
    new_session = (
        sys.executable,
        "-c",
        "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])",
    )
    service = _http_server(
        tmp_path, localstack.free_port(), ("sh", "-c", '"$@" & wait', "sh", *new_session)
    )
    started = service.start(timeout_s=60)
    (child,) = Path(f"/proc/{started.pid}/task/{started.pid}/children").read_text().split()
    assert os.getsid(int(child)) != os.getsid(started.pid)

    assert service.stop().state == "stopped"
    assert not localstack.pid_alive(started.pid)
    assert not localstack.pid_alive(int(child))
    assert not service.health()


def test_a_port_answering_without_our_pid_file_is_an_error(tmp_path: Path) -> None:
    port = localstack.free_port()
    ours = _http_server(tmp_path / "ours", port)
    ours.start(timeout_s=60)
    try:
        other = _http_server(tmp_path / "other", port)
        with pytest.raises(LocalStackError, match=r"web: something that scorehouse did not start"):
            other.start(timeout_s=5)
    finally:
        ours.stop()


def test_a_stale_or_foreign_pid_file_is_not_signalled(tmp_path: Path) -> None:
    service = _http_server(tmp_path, localstack.free_port())
    # This test process is alive but is not an http.server: its PID must not count as ours.
    service.pid_path.write_text(f"{os.getpid()}\n")
    assert service.pid() is None
    assert service.stop().state == "not running"
    assert not service.pid_path.exists()


def test_a_process_that_exits_while_starting_reports_its_log(tmp_path: Path) -> None:
    service = stack.Service(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('bad flag --nope'); sys.exit(3)"],
        state_dir=tmp_path,
        url="http://127.0.0.1:9",
        health=lambda: False,
        marker="python",
    )
    with pytest.raises(LocalStackError, match=r"(?s)broken exited with code 3.*bad flag --nope"):
        service.start(timeout_s=30)
    assert not service.pid_path.exists()


def test_deploy_without_a_server_says_to_run_up(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_HOME": str(tmp_path),
            "SCOREHOUSE_STACK__PREFECT_PORT": str(localstack.free_port()),
        }
    )
    with pytest.raises(LocalStackError, match=r"no Prefect server answers at .*scorehouse up"):
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


def test_stop_returns_once_the_port_is_free(tmp_path: Path) -> None:
    service = _slow_to_stop(tmp_path, localstack.free_port())
    started = service.start(timeout_s=60)
    began = time.monotonic()
    assert service.stop().state == "stopped"
    assert time.monotonic() - began >= 1.5  # it waited for the server to finish
    assert not localstack.pid_alive(started.pid)  # type: ignore[arg-type]
    assert not ports.port_busy("127.0.0.1", service.port)  # type: ignore[arg-type]
    assert not service.stopping_path.exists() and not service.pid_path.exists()


def test_start_while_a_stop_is_under_way_waits_for_it_then_starts_anew(tmp_path: Path) -> None:
    # `scorehouse down` in one terminal, `scorehouse up` in another while it waits: the
    # server that is shutting down is neither "already running" nor someone else's.
    service = _slow_to_stop(tmp_path, localstack.free_port())
    old = service.start(timeout_s=60)
    stopping = threading.Thread(target=service.stop)
    stopping.start()
    deadline = time.monotonic() + 10
    while not service.stopping_path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    new = service.start(timeout_s=60)
    stopping.join()
    try:
        assert (new.state, new.pid != old.pid) == ("started", True)
        assert not localstack.pid_alive(old.pid)  # type: ignore[arg-type]
        assert service.pid() == new.pid and service.health()
    finally:
        service.stop()


def test_a_port_held_by_another_program_is_an_error_that_names_it(tmp_path: Path) -> None:
    with socket.socket() as holder:  # listens but never answers HTTP
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        service = _http_server(tmp_path, port, with_port=True)
        began = time.monotonic()
        with pytest.raises(LocalStackError) as err:
            service.start(timeout_s=60)
    assert time.monotonic() - began < 10
    message = str(err.value)
    assert f"web: port {port} on 127.0.0.1 is held by another program (pid {os.getpid()}" in message
    assert not service.pid_path.exists()


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


def test_a_worker_without_its_pid_file_is_not_running_whatever_prefect_lists(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_HOME": str(tmp_path),
            "SCOREHOUSE_STACK__PREFECT_PORT": str(localstack.free_port()),
        }
    )
    service = stack.worker(settings, "scorehouse-process")
    assert service.argv[-2:] == ["--name", "scorehouse-scorehouse-process"]
    assert not service.health()  # no PID file: no Prefect call, no stale worker counted


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
    server = stack.prefect_server(settings)
    server.start(timeout_s=180)
    try:
        made = stack._prefect(
            settings, "work-pool", "create", "p", "--type", "process", timeout_s=120
        )
        assert made.returncode == 0, made.stderr
        worker = stack.worker(settings, "p")
        assert worker.start(timeout_s=120).state == "started"
        assert worker.stop().state == "stopped"
        listed = httpx.post(
            f"{stack.prefect_api_url(settings)}/work_pools/p/workers/filter", json={}
        )
        assert [(w["name"], w["status"]) for w in listed.json()] == [("scorehouse-p", "ONLINE")]
        again = worker.start(timeout_s=120)
        assert again.state == "started" and worker.pid() == again.pid
        worker.stop()
    finally:
        server.stop()
    assert not ports.port_busy("127.0.0.1", settings.stack.prefect_port)
