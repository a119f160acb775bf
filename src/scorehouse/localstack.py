"""A real `redis-server` the project runs itself: for the demo, `scorehouse up` and the tests.

The server runs daemonized with its config, pid file and log under one directory, bound
to 127.0.0.1 only. The config is generated (`render_config`) so the settings the serving
layout depends on live in one place: hash buckets of up to 1000 fields must stay
listpack-encoded (`hash-max-listpack-entries 1024`) and a load must fail loudly rather
than evict live predictions (`maxmemory-policy noeviction`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from scorehouse.errors import ScorehouseError

HOST = "127.0.0.1"
# Bucket size (1000) plus room for string-id buckets, which fill unevenly.
HASH_MAX_LISTPACK_ENTRIES = 1024
INSTALL_HINT = (
    "redis-server was not found on PATH. Install the Debian package `redis-server` "
    "(`sudo apt-get install -y redis-server`), or run the project's setup as root so it "
    "installs it for you."
)


class LocalStackError(ScorehouseError):
    """A local server could not be started or stopped; the message says why and what to do."""


def find_binary(name: str = "redis-server") -> str:
    """Absolute path of a Redis binary, or a clear error saying how to install it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise LocalStackError(INSTALL_HINT.replace("redis-server was", f"{name} was"))
    return path


def free_port(max_port: int = 65535) -> int:
    """A currently free TCP port on loopback (`max_port` bounds it, e.g. for cluster bus ports)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port <= max_port:
            return port
    raise LocalStackError(f"no free loopback port at or below {max_port}")


def render_config(
    port: int,
    directory: Path,
    *,
    persistence: bool = False,
    maxmemory: str = "0",
    cluster: bool = False,
    tls: TlsFiles | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The project's redis.conf for one server (pure: text only)."""
    directory = directory.resolve()
    lines = [
        f"bind {HOST}",
        "protected-mode yes",
        f"port {port}",
        "daemonize yes",
        f"pidfile {directory / f'redis-{port}.pid'}",
        f"logfile {directory / f'redis-{port}.log'}",
        f"dir {directory}",
        "maxmemory-policy noeviction",
        f"maxmemory {maxmemory}",
        f"hash-max-listpack-entries {HASH_MAX_LISTPACK_ENTRIES}",
        # Scores are at most 10 bytes; 64 keeps score buckets listpack-encoded.
        "hash-max-listpack-value 64",
        # UNLINK of old generations is already lazy; make plain DEL lazy too.
        "lazyfree-lazy-user-del yes",
    ]
    if persistence:
        lines += [f"dbfilename dump-{port}.rdb", "save 900 1", "appendonly no"]
    else:
        lines += ['save ""', "appendonly no"]
    if cluster:
        lines += [
            "cluster-enabled yes",
            f"cluster-config-file nodes-{port}.conf",
            "cluster-node-timeout 5000",
        ]
    if tls is not None:
        # TLS only: the plain port is closed.
        lines[2] = "port 0"
        lines += [
            f"tls-port {port}",
            f"tls-cert-file {tls.cert}",
            f"tls-key-file {tls.key}",
            f"tls-ca-cert-file {tls.ca}",
            "tls-auth-clients no",
        ]
    lines += list(extra)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_test_certificates(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 (needs the `openssl` binary)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalStackError("TLS needs the `openssl` binary (Debian package `openssl`)")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=scorehouse-test-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
        ],
        [
            openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        ],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(cert),
        ],
    ]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True)
    return TlsFiles(ca=ca, cert=cert, key=key)


@dataclass
class RedisServer:
    """One daemonized redis-server on 127.0.0.1; `start()`/`stop()` or use as a context manager."""

    directory: Path
    port: int = 0
    persistence: bool = False
    maxmemory: str = "0"
    cluster: bool = False
    tls: TlsFiles | None = None
    extra: Sequence[str] = ()
    startup_timeout_s: float = 10.0
    pid: int | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{HOST}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.directory / f"redis-{self.port}.conf"

    @property
    def pid_path(self) -> Path:
        return self.directory / f"redis-{self.port}.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    def start(self) -> RedisServer:
        """Write the config, start the server and wait until PING answers."""
        binary = find_binary()
        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(55535 if self.cluster else 65535)
        if self.ping():
            raise LocalStackError(
                f"something already answers on {HOST}:{self.port}; pick another port"
            )
        self.config_path.write_text(
            render_config(
                self.port,
                self.directory,
                persistence=self.persistence,
                maxmemory=self.maxmemory,
                cluster=self.cluster,
                tls=self.tls,
                extra=self.extra,
            )
        )
        result = subprocess.run([binary, str(self.config_path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise LocalStackError(f"redis-server failed to start: {result.stderr or result.stdout}")
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.ping():
                self.pid = self._read_pid()
                return self
            time.sleep(0.02)
        raise LocalStackError(
            f"redis-server on port {self.port} did not answer PING within {self.startup_timeout_s}s; see {self.log_path}:\n{self._log_tail()}"
        )

    def ping(self) -> bool:
        """True when the server answers PING."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            # No retries: redis-py 8 otherwise backs off for seconds on a refused connection.
            client = self.client(
                socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client for this server (no cluster routing)."""
        import redis

        options: dict[str, Any] = {"host": HOST, "port": self.port}
        if self.tls:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        options.update(kwargs)
        return redis.Redis(**options)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM to the pid from the pid file) and wait for it to exit."""
        pid = self.pid or self._read_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            # Until it is gone its port is taken: a `scorehouse up` right after would fail.
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.pid = None

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start() if self.pid is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    """The process runs and is not a zombie (a daemonized server is not our child, so a
    zombie of it is rare, but it must not count as a live server)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@dataclass
class RedisCluster:
    """A local Redis Cluster of `masters` servers on loopback, no replicas."""

    directory: Path
    masters: int = 3
    servers: list[RedisServer] = field(default_factory=list)
    startup_timeout_s: float = 30.0

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, s.port) for s in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> RedisCluster:
        """Start the servers, create the cluster with redis-cli and wait for cluster_state:ok."""
        cli = find_binary("redis-cli")
        self.directory = self.directory.resolve()
        try:
            for i in range(self.masters):
                # The cluster bus listens on port + 10000, so keep ports below 55536.
                server = RedisServer(self.directory / f"node{i}", cluster=True)
                self.servers.append(server.start())
            nodes = [f"{HOST}:{s.port}" for s in self.servers]
            result = subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode != 0:
                raise LocalStackError(
                    f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}"
                )
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            states = []
            for server in self.servers:
                client = server.client(socket_timeout=1)
                try:
                    info = client.execute_command("CLUSTER", "INFO")
                finally:
                    client.close()
                text = info.decode() if isinstance(info, bytes) else str(info)
                states.append("cluster_state:ok" in text)
            if all(states):
                return
            time.sleep(0.1)
        raise LocalStackError("local Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_redis(directory: Path, port: int = 0, **options: object) -> Iterator[RedisServer]:
    """`with running_redis(dir) as server:` — a started server, stopped on exit."""
    server = RedisServer(directory, port=port, **options)  # type: ignore[arg-type]
    with server:
        yield server


def up(
    directory: Path, port: int, *, persistence: bool = True, maxmemory: str = "2gb"
) -> RedisServer:
    """Start the project's local Redis for `scorehouse up` / the demo, or reuse the one running."""
    server = RedisServer(directory, port=port, persistence=persistence, maxmemory=maxmemory)
    if server.ping():
        server.pid = server._read_pid()
        return server
    return server.start()


def down(directory: Path, port: int) -> None:
    """Stop the project's local Redis started by `up`."""
    RedisServer(directory, port=port).stop()
