"""docs/settings.md's tables are the settings model's: regenerated and compared."""

from __future__ import annotations

from pydantic import BaseModel

from scorehouse import settings_doc
from scorehouse.settings import Settings


def test_settings_page_matches_the_model() -> None:
    current = settings_doc.DOC.read_text()
    assert settings_doc.render(current) == current, (
        "docs/settings.md is out of date: run python -m scorehouse.settings_doc"
    )


def test_every_setting_is_listed_with_its_variable_and_a_description() -> None:
    page = settings_doc.reference_markdown()
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for key, sub in section.model_fields.items():
                assert sub.description, f"{name}.{key}"
                row = f"| `{name}.{key}` | `SCOREHOUSE_{name.upper()}__{key.upper()}` |"
                assert row in page
        else:
            assert f"| `{name}` | `SCOREHOUSE_{name.upper()}` |" in page
    assert (
        "| `redis.bucket_size` | `SCOREHOUSE_REDIS__BUCKET_SIZE` | int (≥ 1, ≤ 65536) | `250` |"
        in page
    )
