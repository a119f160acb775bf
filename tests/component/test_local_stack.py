"""scorehouse.stack's background processes: PID files, health waits, idempotent start, group stop.

Real processes (a Python HTTP server on a free loopback port) stand in for the servers;
the Prefect and MLflow servers themselves run in tests/e2e/test_prefect_deployments.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from scorehouse import localstack, stack
from scorehouse.localstack import LocalStackError
from scorehouse.settings import load_settings


def _http_server(directory: Path, port: int, argv_prefix: tuple[str, ...] = ()) -> stack.Service:
    url = f"http://127.0.0.1:{port}"
    return stack.Service(
        name="web",
        argv=[*argv_prefix, sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        state_dir=directory,
        url=url,
        health=lambda: stack.http_ok(url),
        marker="http.server",
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
    assert not localstack._alive(started.pid)
    assert not localstack._alive(int(children[0]))
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
    assert not localstack._alive(started.pid)
    assert not localstack._alive(int(child))
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
    bad.write_text("deployments:\n  - name: nightly\n    entrypoint: flows/nightly.py:nightly\n")
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
