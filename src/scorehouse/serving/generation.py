"""Generation metadata as stored in `{ns}:{G}:meta` (pure parsing, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from scorehouse.serving.keys import ARM_SLOTS


@dataclass(frozen=True)
class Experiment:
    """A champion vs challenger experiment a generation serves (docs/redis-keys.md): entities
    whose `keys.experiment_arm(name, id, slots)` is "challenger" hold the challenger's score."""

    name: str
    share: float
    slots: int  # the challenger's slots out of keys.ARM_SLOTS
    challenger_version: str

    def meta(self) -> dict[str, str]:
        """The generation metadata fields of the experiment."""
        return {
            "experiment": self.name,
            "experiment_share": repr(self.share),
            "experiment_slots": str(self.slots),
            "experiment_rule": RULE,
            "challenger_version": self.challenger_version,
        }

    @classmethod
    def from_meta(cls, m: dict[str, str]) -> Experiment | None:
        if not m.get("experiment"):
            return None
        return cls(
            m["experiment"],
            float(m.get("experiment_share", 0)),
            int(m.get("experiment_slots", 0)),
            m.get("challenger_version", ""),
        )


# Stored with the experiment, so a reader of the metadata alone knows how to compute an arm.
RULE = f"crc32(utf-8 '<experiment>:<id>') mod {ARM_SLOTS} < experiment_slots: challenger"


@dataclass(frozen=True)
class GenerationInfo:
    """What a generation holds, as stored in `{ns}:{G}:meta`."""

    generation: str
    ds: date
    model_name: str
    model_version: str
    count: int
    features_count: int
    string_buckets: int
    bucket_size: int
    checksum: str
    loaded_at: str
    status: str
    previous: str | None = None
    feature_names: tuple[str, ...] = ()
    experiment: Experiment | None = None
    stats: dict[str, float] = field(default_factory=dict, compare=False)

    @classmethod
    def from_meta(cls, generation: str, meta: dict[Any, Any]) -> GenerationInfo:
        m = {_text(k): _text(v) for k, v in meta.items()}
        return cls(
            generation=generation,
            ds=date.fromisoformat(m["ds"]),
            model_name=m.get("model_name", ""),
            model_version=m.get("model_version", ""),
            count=int(m.get("count", 0)),
            features_count=int(m.get("features_count", 0)),
            string_buckets=int(m.get("string_buckets", 0)),
            bucket_size=int(m.get("bucket_size", 1000)),
            checksum=m.get("checksum", ""),
            loaded_at=m.get("loaded_at", ""),
            status=m.get("status", ""),
            previous=m.get("previous") or None,
            feature_names=tuple(n for n in m.get("features", "").split(",") if n),
            experiment=Experiment.from_meta(m),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
