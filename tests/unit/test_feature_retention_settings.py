"""The snapshot retention must cover the training lookback plus the TTL."""

from __future__ import annotations

import pytest

from scorehouse.features.retention import required_days
from scorehouse.settings import SettingsError, load_settings


def test_default_retention_covers_lookback_and_ttl() -> None:
    settings = load_settings(environ={})
    assert required_days(settings) == 180 + 3 + 1
    assert settings.features.retention_days >= required_days(settings)


def test_retention_shorter_than_lookback_is_refused_at_load() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(
            environ={
                "SCOREHOUSE_FEATURES__RETENTION_DAYS": "60",
                "SCOREHOUSE_FEATURES__TRAINING_LOOKBACK_DAYS": "56",
                "SCOREHOUSE_FEATURES__TTL_DAYS": "7",
            }
        )
    assert (
        "features: Value error, retention_days 60 is shorter than the training lookback: "
        "training_lookback_days 56 + ttl_days 7 + 1 = 64" in str(err.value)
    )


def test_retention_equal_to_lookback_plus_ttl_plus_one_loads() -> None:
    settings = load_settings(
        environ={
            "SCOREHOUSE_FEATURES__RETENTION_DAYS": "64",
            "SCOREHOUSE_FEATURES__TRAINING_LOOKBACK_DAYS": "56",
            "SCOREHOUSE_FEATURES__TTL_DAYS": "7",
        }
    )
    assert settings.features.retention_days == required_days(settings) == 64
