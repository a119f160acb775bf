"""The buy-till-you-die baseline: a BG/NBD model (PyMC-Marketing's `BetaGeoModel`) fit by
MAP, scoring P(at least one purchase within the label horizon).

For purchase-like labels a model of purchase timing alone is the baseline to beat: it
learns four population parameters from each customer's count and timing of repeat
purchases, so a small or shifted training set moves them little. The project's
`model.btyd` names three features, in days as of the row's as-of date:

    x   = purchase_days - 1                    repeat purchase days
    T   = days_since_first                     age since the first purchase
    t_x = days_since_first - days_since_last   the last purchase, from the first

An entity without a purchase (missing `days_since_first`, or fewer than one purchase
day) is outside the model: it scores 0 and ranks last. pymc-marketing is optional (the
`btyd` extra) and imported only when a fit starts. numpy/pandas in and out, no I/O.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scorehouse.project.spec import BtydDecl

MAX_FIT_ROWS = 200_000  # the MAP fit is linear in rows; a seeded sample keeps it bounded
SKIPPED = "BG/NBD baseline skipped: pymc-marketing is not installed (the `btyd` extra)"

log = logging.getLogger(__name__)


class NothingToFit(ValueError):
    """No row holds a purchase history (the features are empty or not what is declared)."""


def available() -> bool:
    """Whether pymc-marketing can be imported (it is an optional extra)."""
    try:
        with _quiet():
            import pymc_marketing.clv  # noqa: F401
    except ImportError:
        return False
    return True


def inputs(columns: Mapping[str, Any], decl: BtydDecl) -> pd.DataFrame:
    """BG/NBD's frequency (x), recency (t_x) and T per row, and `bought`: whether the row
    has a purchase history the model can read (the others hold zeros)."""
    days = np.asarray(columns[decl.purchase_days], dtype=np.float64)
    first = np.asarray(columns[decl.days_since_first], dtype=np.float64)
    last = np.asarray(columns[decl.days_since_last], dtype=np.float64)
    bought = np.isfinite(days) & np.isfinite(first) & np.isfinite(last)
    bought &= (days >= 1) & (first >= 0) & (last >= 0) & (last <= first)
    T = np.where(bought, first, 0.0)
    # a same-day repeat is one purchase day; the features count days, so x is whole
    x = np.where(bought, np.round(days) - 1, 0.0)
    t_x = np.where(bought & (x > 0), first - last, 0.0)
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T, "bought": bought})


@dataclass(frozen=True)
class BgNbdBaseline:
    """A fitted BG/NBD model (pymc-marketing's, MAP point) and the label horizon."""

    decl: BtydDecl
    horizon_days: int
    model: Any  # pymc_marketing.clv.BetaGeoModel
    fit_rows: int  # the entities with a purchase history it was fit on

    def params(self) -> dict[str, float]:
        """r, alpha (purchase rate) and a, b (dropout): what the fit learned."""
        fitted = self.model.fit_result
        return {k: float(np.asarray(fitted[k]).ravel()[0]) for k in ("r", "alpha", "a", "b")}

    def score(self, columns: Mapping[str, Any]) -> NDArray[np.float64]:
        """P(at least one purchase in the next `horizon_days`) per row; 0 without a purchase."""
        rows = inputs(columns, self.decl)
        out = np.zeros(len(rows), dtype=np.float64)
        bought = rows["bought"].to_numpy()
        if bought.any():
            out[bought] = 1.0 - self._no_purchase(rows[bought].reset_index(drop=True))
        return np.clip(out, 0.0, 1.0)

    def _no_purchase(self, rows: pd.DataFrame) -> NDArray[np.float64]:
        """P(no purchase in (T, T + horizon]) for rows with a purchase history."""
        x, T = rows["frequency"].to_numpy(), rows["T"].to_numpy()
        t = float(self.horizon_days)
        p = self.params()
        # Without a repeat purchase a BG/NBD customer cannot have dropped out (dropout
        # follows a purchase), so the probability is the Gamma-Poisson term alone.
        # pymc-marketing 0.18.2's expected_probability_no_purchase adds the dropout term
        # at x = 0 as well, overstating it (tests/component/test_btyd_baseline.py pins both).
        out = ((p["alpha"] + T) / (p["alpha"] + T + t)) ** p["r"]
        repeat = x > 0
        if repeat.any():
            data = rows[repeat].drop(columns="bought")
            data.insert(0, "customer_id", np.arange(len(data)))
            with _quiet():
                library = self.model.expected_probability_no_purchase(self.horizon_days, data=data)
            out[repeat] = np.asarray(library, dtype=np.float64).reshape(-1)
        return np.asarray(out, dtype=np.float64)


def fit(rows: pd.DataFrame, decl: BtydDecl, horizon_days: int, seed: int) -> BgNbdBaseline:
    """Fit by MAP on `rows`, one per entity (the caller chooses which), at most
    MAX_FIT_ROWS of them (a seeded sample); entities without a purchase are left out."""
    data = inputs(rows, decl)
    data = data[data["bought"].to_numpy()].drop(columns="bought")
    if len(data) > MAX_FIT_ROWS:
        data = data.sample(n=MAX_FIT_ROWS, random_state=seed)
    if len(data) == 0:
        raise NothingToFit("no train entity has a purchase history to fit on")
    data = data.reset_index(drop=True)
    data.insert(0, "customer_id", np.arange(len(data)))
    with _quiet():
        from pymc_marketing.clv import BetaGeoModel

        model = BetaGeoModel(data=data)
        model.fit(method="map", progressbar=False)
    return BgNbdBaseline(decl, horizon_days, model, len(data))


def fit_or_skip(
    rows: Callable[[], pd.DataFrame], decl: BtydDecl, horizon_days: int, seed: int
) -> tuple[BgNbdBaseline | None, str | None]:
    """`fit` on `rows()` (asked for only when pymc-marketing is installed), or None and why
    the baseline is skipped (logged): the library is missing or nothing has a history."""
    if not available():
        note = SKIPPED
    else:
        try:
            return fit(rows(), decl, horizon_days, seed), None
        except NothingToFit as exc:
            note = f"BG/NBD baseline skipped: {exc}"
    log.warning(note)
    return None, note


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pymc-marketing and PyTensor talk on import and fit about nothing a training run can
    act on: pydantic deprecations in pymc-marketing's own models, PyTensor's notice that
    it found no BLAS (a MAP fit of four parameters does not need one), PyMC's logs."""
    loggers = [logging.getLogger(n) for n in ("pymc", "pytensor", "pymc_marketing", "arviz")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        warnings.filterwarnings("ignore", message=".*extra keyword arguments on `Field`.*")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
