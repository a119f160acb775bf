"""The failure alert against a real HTTP server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scorehouse.orchestration.alerts import alert_payload, send_alert
from scorehouse.settings import load_settings


@pytest.fixture
def server() -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    received: list[tuple[str, dict[str, Any]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200 if self.path.startswith("/ok") else 500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port, received
    httpd.shutdown()
    httpd.server_close()


def test_alert_is_logged_and_posted_without_the_token(
    server: tuple[int, list[tuple[str, dict[str, Any]]]], caplog: pytest.LogCaptureFixture
) -> None:
    port, received = server
    url = f"http://127.0.0.1:{port}/ok/services/T0KEN?sig=s3cret"
    settings = load_settings(environ={"SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL": url})
    payload = alert_payload("nightly", "run-1", "score", "DriftError: drift", "2026-10-31")
    logger = logging.getLogger("scorehouse.test.alerts")
    with caplog.at_level(logging.INFO, logger="scorehouse.test.alerts"):
        assert send_alert(settings, payload, logger) is True
    assert received == [("/ok/services/T0KEN?sig=s3cret", payload)]
    assert [r.levelname for r in caplog.records] == ["ERROR", "INFO"]
    assert "failed at step score (ds 2026-10-31): DriftError: drift" in caplog.records[0].message
    assert caplog.records[1].message == f"alert posted to http://127.0.0.1:{port}/… (HTTP 200)"
    assert "T0KEN" not in caplog.text and "s3cret" not in caplog.text


def test_a_webhook_that_fails_is_logged_not_raised(
    server: tuple[int, list[tuple[str, dict[str, Any]]]], caplog: pytest.LogCaptureFixture
) -> None:
    port, received = server
    settings = load_settings(
        environ={"SCOREHOUSE_ORCHESTRATION__WEBHOOK_URL": f"http://127.0.0.1:{port}/down/T0KEN"}
    )
    payload = alert_payload("backfill", "run-2", "publish", "RedisLoadError: x", None)
    logger = logging.getLogger("scorehouse.test.alerts")
    with caplog.at_level(logging.INFO, logger="scorehouse.test.alerts"):
        assert send_alert(settings, payload, logger) is False
    assert len(received) == 1
    assert caplog.records[-1].levelname == "ERROR"
    assert caplog.records[-1].message.startswith(f"alert webhook http://127.0.0.1:{port}/… failed")
    assert "T0KEN" not in caplog.text


def test_without_a_webhook_the_alert_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("scorehouse.test.alerts")
    payload = alert_payload("nightly", "run-3", "features", "ValidationError: x", "2026-10-31")
    with caplog.at_level(logging.INFO, logger="scorehouse.test.alerts"):
        assert send_alert(load_settings(environ={}), payload, logger) is False
    assert [r.levelname for r in caplog.records] == ["ERROR"]
