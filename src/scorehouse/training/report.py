"""The evaluation report of one training: PNG charts and the metrics table, written to a folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scorehouse.training import metrics as m

Scores = Mapping[str, np.ndarray]  # scorer name ("model", "baseline", ...) → scores


def metrics_table(rows: Mapping[tuple[str, str], Mapping[str, float]]) -> list[dict[str, object]]:
    """Flat rows: one per (scorer, split), one column per metric."""
    return [{"scorer": s, "split": split, **values} for (s, split), values in rows.items()]


def write_tables(
    rows: list[dict[str, object]], folder: Path, notes: Sequence[str] = ()
) -> list[Path]:
    """metrics.csv and metrics.md from `metrics_table` rows; `notes` (e.g. a baseline that
    did not run) follow the markdown table."""
    columns = ["scorer", "split", *m.METRIC_NAMES]
    csv_lines = [",".join(columns)]
    md_lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_fmt(row.get(c)) for c in columns]
        csv_lines.append(",".join(cells))
        md_lines.append("| " + " | ".join(cells) + " |")
    csv_path, md_path = folder / "metrics.csv", folder / "metrics.md"
    csv_path.write_text("\n".join(csv_lines) + "\n")
    md_lines += ["", *(f"- {note}" for note in notes)] if notes else []
    md_path.write_text("\n".join(md_lines) + "\n")
    return [csv_path, md_path]


def _fmt(value: object) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def write_charts(
    y: np.ndarray,
    scores: Scores,
    importance_gain: Mapping[str, float],
    folder: Path,
    split: str = "test",
) -> list[Path]:
    """ROC, PR, calibration, lift and gain-importance charts as PNG files."""
    paths = [
        _roc(y, scores, folder / f"roc_{split}.png", split),
        _pr(y, scores, folder / f"pr_{split}.png", split),
        _calibration(y, scores, folder / f"calibration_{split}.png", split),
        _lift(y, scores, folder / f"lift_{split}.png", split),
        _importance(importance_gain, folder / "feature_importance_gain.png"),
    ]
    return paths


def auc_by_date_chart(table: pd.DataFrame, title: str, path: Path) -> Path:
    """ROC AUC per as-of date, one line per scorer (a backtest's `per_date` rows)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for scorer, part in table.groupby("scorer"):
        ax.plot(part["as_of"], part["roc_auc"], marker="o", label=str(scorer))
    ax.set_ylabel("ROC AUC")
    ax.set_title(title)
    ax.legend()
    fig.autofmt_xdate()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _roc(y: np.ndarray, scores: Scores, path: Path, split: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        fpr, tpr = m.roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {m.roc_auc(y, p):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({split})")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _pr(y: np.ndarray, scores: Scores, path: Path, split: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        recall, precision = m.pr_curve(y, p)
        ax.step(recall, precision, where="post", label=f"{name} (AP {m.pr_auc(y, p):.4f})")
    ax.axhline(float(np.mean(y)), color="grey", linestyle=":", linewidth=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall ({split})", ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def _calibration(y: np.ndarray, scores: Scores, path: Path, split: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        cal = m.calibration_bins(y, p)
        used = cal.count > 0
        ece = m.expected_calibration_error(y, p)
        ax.plot(
            cal.mean_score[used],
            cal.positive_rate[used],
            marker="o",
            label=f"{name} (ECE {ece:.4f})",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        title=f"Calibration ({split})",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def _lift(y: np.ndarray, scores: Scores, path: Path, split: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(len(scores), 1)
    deciles = np.arange(1, 11)
    for i, (name, p) in enumerate(scores.items()):
        ax.bar(
            deciles + (i - (len(scores) - 1) / 2) * width, m.lift_by_decile(y, p), width, label=name
        )
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="score decile (1 = highest)",
        ylabel="lift",
        title=f"Lift by decile ({split})",
        xticks=deciles,
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def _importance(gain: Mapping[str, float], path: Path, top: int = 25) -> Path:
    items = sorted(gain.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.28 * len(items) + 1)))
    ax.barh([k for k, _ in reversed(items)], [v for _, v in reversed(items)])
    ax.set(xlabel="average gain per split", title="Feature importance (gain)")
    return _save(fig, path)
