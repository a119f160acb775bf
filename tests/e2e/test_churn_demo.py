"""`scorehouse demo --example churn` end to end in a fresh home: generated files through
ingest, features, training, the nightly and lookups of string account ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scorehouse.localstack import down, free_port


def test_the_churn_demo_scores_and_serves_string_account_ids(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCOREHOUSE_", "PREFECT_API_URL", "PREFECT_HOME"))
    }
    env |= {
        "SCOREHOUSE_HOME": str(home),
        "SCOREHOUSE_SPARK__PROFILE": "test",
        "SCOREHOUSE_REDIS__URL": f"redis://127.0.0.1:{port}/0",
        "SCOREHOUSE_ORCHESTRATION__RETRIES": "0",
    }
    command = [sys.executable, "-m", "scorehouse", "demo", "--example", "churn"]
    try:
        done = subprocess.run(
            [*command, "--entities", "300", "--days", "200", "--seed", "3", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        down(home / "redis", port)
    assert done.returncode == 0, done.stderr[-4000:]
    timings = json.loads(done.stdout)
    assert {"ingest accounts", "ingest usage", "lookups", "total"} <= set(timings)
    scores = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("    {")]
    assert len(scores) == 4
    known, unknown = scores[:3], scores[3]
    assert all(s["entity_id"].startswith("acc-") and s["source"] == "cache" for s in known)
    assert (unknown["entity_id"], unknown["source"]) == ("no-such-account", "fallback")
    assert (home / "warehouse" / "churn" / "predictions").is_dir()
