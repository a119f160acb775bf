"""Where the repository's declarative files live (sql/, spark_conf/)."""

from __future__ import annotations

import os
from pathlib import Path

# The package is installed editable from the repository (or copied with it into the
# image), so sql/ sits two levels above src/scorehouse/. SCOREHOUSE_REPO overrides.
REPO_ROOT = Path(os.environ.get("SCOREHOUSE_REPO", Path(__file__).resolve().parents[2]))
SQL_DIR = REPO_ROOT / "sql"
SPARK_CONF_DIR = REPO_ROOT / "spark_conf"
# Shipped example projects (examples/<name>/project.yaml); the purchase example is the
# project the local demo runs when no other is given.
EXAMPLES_DIR = REPO_ROOT / "examples"
