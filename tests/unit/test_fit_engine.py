"""Where `model.distributed: auto` fits a model."""

from __future__ import annotations

from scorehouse.settings import ModelSettings
from scorehouse.training.train import fit_engine


def test_auto_fits_on_the_driver_while_the_rows_fit_the_budget() -> None:
    model = ModelSettings(single_node_max_gib=1.0)
    per_row = (33 + 3) * 8
    fits = 2**30 // per_row
    assert fit_engine(model, fits, 33) == "single_node"
    assert fit_engine(model, fits + 1, 33) == "distributed"


def test_always_and_never_override_the_size() -> None:
    assert fit_engine(ModelSettings(distributed="always"), 10, 33) == "distributed"
    assert fit_engine(ModelSettings(distributed="never"), 10**9, 33) == "single_node"
