"""Failure alerts: an ERROR log line, and a JSON POST to the configured webhook."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from scorehouse.settings import Settings

log = logging.getLogger(__name__)


def safe_url(url: str) -> str:
    """Scheme, host and port only: webhook paths and queries usually carry the token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def alert_payload(
    flow: str, run_id: str | None, failed_step: str | None, error: str, ds: str | None
) -> dict[str, Any]:
    return {
        "flow": flow,
        "flow_run_id": run_id,
        "failed_step": failed_step,
        "error": error,
        "ds": ds,
    }


def quality_payload(flow: str, run_id: str | None, ds: str, problems: list[str]) -> dict[str, Any]:
    """A run that succeeded but found its models doing worse than they should."""
    return {"flow": flow, "flow_run_id": run_id, "kind": "quality", "ds": ds, "problems": problems}


def send_alert(
    settings: Settings,
    payload: dict[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any] = log,
) -> bool:
    """Log the alert, then POST it when a webhook is configured. Never raises: the flow has
    already failed, and the alert must not hide why. True when the webhook answered 2xx."""
    if payload.get("kind") == "quality":
        logger.error(
            "ALERT: flow %s run %s (ds %s): %s",
            payload["flow"],
            payload["flow_run_id"],
            payload["ds"],
            "; ".join(payload["problems"]),
        )
    else:
        logger.error(
            "ALERT: flow %s run %s failed at step %s (ds %s): %s",
            payload["flow"],
            payload["flow_run_id"],
            payload["failed_step"] or "none (before the first step)",
            payload["ds"],
            payload["error"],
        )
    secret = settings.orchestration.webhook_url
    if secret is None:
        return False
    url = secret.get_secret_value()
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.orchestration.webhook_timeout_s) as r:
            status = int(r.status)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        logger.error("alert webhook %s failed: %s", safe_url(url), reason)
        return False
    logger.info("alert posted to %s (HTTP %d)", safe_url(url), status)
    return 200 <= status < 300
