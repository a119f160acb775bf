"""Connections to a single Redis or a Redis Cluster from settings (I/O edge).

`RedisParams` is plain and picklable so Spark executors can open their own connections;
it carries the password (from SCOREHOUSE_REDIS__PASSWORD only) but never prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from scorehouse.settings import RedisSettings

AnyRedis = redis.Redis | RedisCluster


def mask_url(url: str) -> str:
    """The URL without user info, safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class RedisParams:
    """Everything needed to connect, as plain values (no SparkSession, no settings object)."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    socket_timeout: float = 5.0
    retries: int = 2

    @classmethod
    def from_settings(
        cls, settings: RedisSettings, socket_timeout: float = 5.0, retries: int = 2
    ) -> RedisParams:
        return cls(
            url=settings.url,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            tls=settings.tls or settings.url.startswith("rediss://"),
            tls_ca_file=str(settings.tls_ca_file) if settings.tls_ca_file else None,
            socket_timeout=socket_timeout,
            retries=retries,
        )

    def __str__(self) -> str:
        user = f" as {self.username}" if self.username else ""
        return f"{mask_url(self.url)}{user}{' (TLS)' if self.tls else ''}"

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            "retry": Retry(NoBackoff(), self.retries) if self.retries else Retry(NoBackoff(), 0),
        }
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        if self.tls:
            options["ssl_ca_certs"] = self.tls_ca_file
            options["ssl_cert_reqs"] = "required" if self.tls_ca_file else "none"
        return options

    def _url(self) -> str:
        if self.tls and self.url.startswith("redis://"):
            return "rediss://" + self.url[len("redis://") :]
        return self.url

    def connect(self, cluster: bool | None = None) -> AnyRedis:
        """A client for the URL; a Redis Cluster is detected (INFO cluster) unless told."""
        options = self._options()
        if cluster is None:
            probe = redis.Redis.from_url(self._url(), **options)
            try:
                cluster = bool(probe.info("cluster").get("cluster_enabled"))
            except NoPermissionError:
                cluster = False  # a user without INFO: treat as a single server
            finally:
                probe.close()
        if cluster:
            options.pop("retry", None)
            parts = urlsplit(self._url())
            return RedisCluster(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 6379,
                ssl=self.tls,
                **{k: v for k, v in options.items()},
            )
        return redis.Redis.from_url(self._url(), **options)


def is_cluster(client: AnyRedis) -> bool:
    return isinstance(client, RedisCluster)


def masters(client: AnyRedis) -> list[redis.Redis]:
    """One plain client per master (the server itself for a single Redis)."""
    if isinstance(client, RedisCluster):
        return [node.redis_connection for node in client.get_primaries()]  # type: ignore[misc]
    return [client]
