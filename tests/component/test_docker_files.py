"""Dockerfile and docker-compose.yml, checked without a Docker engine (none runs here).

hadolint lints the Dockerfile; the compose file must name the five services, give each
a healthcheck, and every command it runs must exist with the options it passes (checked
against the installed CLIs' --help and a real redis-server started with the same flags).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from scorehouse.cli import main
from scorehouse.localstack import HASH_MAX_LISTPACK_ENTRIES, find_binary, free_port
from scorehouse.paths import REPO_ROOT, SPARK_CONF_DIR
from scorehouse.settings import load_settings
from scorehouse.spark import read_profile

BIN = Path(sys.executable).parent
SERVICES = {"redis", "prefect-server", "mlflow", "worker", "lookup"}
IMAGE_SERVICES = SERVICES - {"redis"}


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        assert found, f"{name} is not installed (make setup installs the dev extra)"
        return found
    return str(path)


# Where the image puts the project and its virtualenv, and where they are on this machine.
IMAGE_PATHS = {"/opt/scorehouse/venv/bin": str(BIN), "/opt/scorehouse/app": str(REPO_ROOT)}


def _instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction of the Dockerfile, continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line[len(name) + 1 :] for line in text.splitlines() if line.startswith(f"{name} ")]


def image_environment() -> dict[str, str]:
    """The ENV of the image, `$VAR` expanded against what the image set before."""
    env: dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    for args in _instructions("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), value)
    return env


def image_command() -> list[str]:
    (cmd,) = [json.loads(args) for args in _instructions("CMD")]
    return list(cmd)


def local_environment(image_env: dict[str, str]) -> dict[str, str]:
    """The image's environment with its paths mapped onto this checkout and virtualenv."""
    env = dict(image_env)
    for key, value in env.items():
        for image_path, here in IMAGE_PATHS.items():
            value = value.replace(image_path, here)
        env[key] = value
    env["PATH"] = f"{env['PATH']}:{os.environ.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_hadolint_passes_on_the_dockerfile() -> None:
    done = subprocess.run(
        [_tool("hadolint"), "--config", str(REPO_ROOT / ".hadolint.yaml"), "Dockerfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_hadolint_reports_a_broken_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install scorehouse\nCMD scorehouse serve\n")
    done = subprocess.run(
        [_tool("hadolint"), "--config", str(REPO_ROOT / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert {"DL3006", "DL3003", "DL3013", "DL3042", "DL3025"} <= set(
        re.findall(r"DL\d{4}", done.stdout)
    )


def test_dockerfile_copies_only_files_that_exist() -> None:
    sources = [s for args in _instructions("COPY") for s in args.split()[:-1]]
    assert sources
    assert [s for s in sources if not (REPO_ROOT / s).exists()] == []


def test_image_and_cluster_profile_run_the_tested_delta_path() -> None:
    """No Delta jars anywhere: Spark writes Parquet, the driver commits with deltalake."""
    runs = " ".join(_instructions("RUN")).lower()
    assert not [word for word in ("jar", "maven", "delta") if word in runs]
    (install,) = [args for args in _instructions("RUN") if "pip install" in args]
    assert install.split()[-1] == "."  # the package alone: no extras
    assert not [key for key in image_environment() if "DELTA" in key]
    profile = read_profile(SPARK_CONF_DIR / "cluster.conf")
    assert [f"{k} {v}" for k, v in profile.items() if "delta" in f"{k} {v}".lower()] == []


def test_compose_has_the_stack_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        if test[1] == "python":
            compile(test[3], f"{name} healthcheck", "exec")  # valid Python
    for name in IMAGE_SERVICES:
        build = services[name]["build"]
        assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()
        assert services[name]["image"] == services["lookup"]["image"]
    # Services wait for what they need, by name.
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= SERVICES - {name}


def test_compose_settings_load_into_the_settings_model(compose: dict[str, Any]) -> None:
    for name in ("worker", "lookup"):
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        settings = load_settings(environ=env)  # a misspelt key would be an error
        assert settings.redis.url == "redis://redis:6379/0"
        assert settings.mlflow.tracking_uri == "http://mlflow:5000"
        assert str(settings.warehouse) == "/data/warehouse"
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    mlflow_env = compose["services"]["mlflow"]["environment"]
    assert mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_worker_polls_the_pool_of_prefect_yaml(compose: dict[str, Any]) -> None:
    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    command = compose["services"]["worker"]["command"]
    assert pools == {command[command.index("--pool") + 1]}


def test_compose_commands_exist_with_their_options(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    # scorehouse: run by the real CLI down to the library call, which only records it.
    command = services["lookup"]["command"]
    assert command[0] == "scorehouse"
    served: list[tuple[str | None, int | None]] = []
    monkeypatch.setattr(
        "scorehouse.serving.service.serve",
        lambda settings, host=None, port=None: served.append((host, port)),
    )
    assert main(command[1:]) == 0
    assert served == [("0.0.0.0", 8080)]
    # prefect and mlflow: every option is listed by the installed CLI's help.
    for name in ("prefect-server", "mlflow", "worker"):
        command = services[name]["command"]
        words = [w for w in command if not w.startswith("-")]
        subcommand = words[: 3 if command[0] == "prefect" else 2]
        help_text = subprocess.run(
            [_tool(subcommand[0]), *subcommand[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PATH": str(BIN), "COLUMNS": "200"},
        )
        assert help_text.returncode == 0, (name, help_text.stderr)
        missing = [o for o in command if o.startswith("--") and o not in help_text.stdout]
        assert missing == [], name


def test_redis_accepts_the_compose_flags_and_applies_the_project_config(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [find_binary(), *command[1:], "--port", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
                time.sleep(0.1)
        config = {
            k: client.config_get(k)[k]
            for k in ("hash-max-listpack-entries", "maxmemory-policy", "save", "appendonly")
        }
        assert config == {
            "hash-max-listpack-entries": str(HASH_MAX_LISTPACK_ENTRIES),
            "maxmemory-policy": "noeviction",
            "save": "",
            "appendonly": "no",
        }
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_image_environment_loads_into_the_settings_model() -> None:
    env = image_environment()
    assert {"SCOREHOUSE_REPO", "SCOREHOUSE_SERVING__HOST"} <= set(env)
    assert env["PATH"].startswith("/opt/scorehouse/venv/bin:")
    settings = load_settings(environ=env)  # variables that are no settings are ignored
    assert settings.serving.host == "0.0.0.0"


def test_image_command_starts_with_the_image_environment(tmp_path: Path) -> None:
    command = image_command()
    assert command == ["scorehouse", "serve"]
    port = free_port()
    env = local_environment(image_environment())
    env.update(
        SCOREHOUSE_HOME=str(tmp_path / "home"),
        SCOREHOUSE_SERVING__PORT=str(port),
        # Loopback here (the image listens on every interface of its container); no Redis
        # answers on this port, so /healthz says 503: what matters is that the service runs.
        SCOREHOUSE_SERVING__HOST="127.0.0.1",
        SCOREHOUSE_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    env.pop("SCOREHOUSE_CONFIG", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.25)
        assert status in (200, 503)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
