"""The model registry edge: register, the champion gate, aliases, and loading without Spark.

Every trained model is registered under `settings.model.name`. The alias `champion` is
what batch scoring and the online fallback load; `challenger` marks the latest model
that did not pass the gate. Promotion history lives in model-version tags:
`previous_champion` (the version that was champion when this one was promoted),
`promoted_at`, `promoted_by`, and on a demoted version `rolled_back_at`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import mlflow.xgboost
import numpy as np
import xgboost as xgb
from mlflow.exceptions import MlflowException

from scorehouse.errors import ScorehouseError
from scorehouse.settings import Settings
from scorehouse.training.tracking import client

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class ModelRegistryError(ScorehouseError):
    """No such model, version or alias, or a promotion that cannot be done."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    run_id: str
    booster: xgb.Booster
    feature_names: list[str]

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for a dense float32 matrix from `features.registry.to_matrix`."""
        return np.asarray(self.booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    champion_version: str | None = None
    champion_auc: float | None = None


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: list[str]
    test_auc: float | None
    run_id: str
    created: datetime
    gate_reason: str | None


def gate(
    candidate_auc: float,
    baselines: Mapping[str, float],
    champion_auc: float | None,
    tolerance: float,
    champion_version: str | None = None,
) -> GateDecision:
    """Pure rule: champion only if AUC > the best baseline's (of those the project
    declares: baseline name -> its test AUC) AND >= the champion's on the same test set -
    tolerance."""
    beats = ""
    if baselines:
        name, best = max(baselines.items(), key=lambda kv: kv[1])
        if not candidate_auc > best:
            return GateDecision(
                False,
                f"test AUC {candidate_auc:.4f} does not beat the best baseline, {name}'s {best:.4f}",
                champion_version,
                champion_auc,
            )
        beats = f" and beats the best baseline, {name}'s {best:.4f}"
    if champion_auc is None:
        return GateDecision(True, f"no champion yet; test AUC {candidate_auc:.4f}{beats}")
    if candidate_auc < champion_auc - tolerance:
        return GateDecision(
            False,
            f"test AUC {candidate_auc:.4f} is below champion v{champion_version}'s "
            f"{champion_auc:.4f} on the same test set minus tolerance {tolerance}",
            champion_version,
            champion_auc,
        )
    return GateDecision(
        True,
        f"test AUC {candidate_auc:.4f} >= champion v{champion_version}'s {champion_auc:.4f} "
        f"- {tolerance}{beats}",
        champion_version,
        champion_auc,
    )


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version holding `alias`, or None (also when the model is not registered yet)."""
    try:
        mv = client(settings).get_model_version_by_alias(settings.model.name, alias)
    except MlflowException:
        return None
    return str(mv.version)


def load_model(settings: Settings, alias: str = CHAMPION) -> LoadedModel:
    """The native booster behind `alias`; no Spark. Boosters are cached per version."""
    c = client(settings)
    name = settings.model.name
    try:
        mv = c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ModelRegistryError(
            f"model {name!r} has no version with alias {alias!r} in "
            f"{settings.mlflow.tracking_uri}: train one with `scorehouse train`"
        ) from exc
    booster = _load_booster(settings.mlflow.tracking_uri, name, str(mv.version))
    return LoadedModel(
        name=name,
        version=str(mv.version),
        run_id=str(mv.run_id),
        booster=booster,
        feature_names=list(booster.feature_names or []),
    )


def load_version(settings: Settings, version: str) -> LoadedModel:
    """The native booster of one registered version; no Spark."""
    name = settings.model.name
    try:
        mv = client(settings).get_model_version(name, version)
    except MlflowException as exc:
        raise ModelRegistryError(f"model {name!r} has no version {version!r}") from exc
    booster = _load_booster(settings.mlflow.tracking_uri, name, str(mv.version))
    return LoadedModel(
        name, str(mv.version), str(mv.run_id), booster, list(booster.feature_names or [])
    )


@lru_cache(maxsize=8)
def _load_booster(tracking_uri: str, name: str, version: str) -> xgb.Booster:
    # A registered version never changes, so (store, name, version) is a safe cache key.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    booster = mlflow.xgboost.load_model(f"models:/{name}/{version}")
    if not isinstance(booster, xgb.Booster):
        raise ModelRegistryError(f"{name} v{version} is not a native XGBoost booster")
    return booster


def register(settings: Settings, model_uri: str, tags: dict[str, str]) -> str:
    """Register a logged model under settings.model.name; returns the new version."""
    mv = mlflow.register_model(model_uri, settings.model.name, tags=tags)
    return str(mv.version)


def record_decision(settings: Settings, version: str, decision: GateDecision) -> str:
    """Give `version` the alias the gate decided, and tag why. Returns the alias."""
    c = client(settings)
    name = settings.model.name
    c.set_model_version_tag(
        name, version, "gate_decision", CHAMPION if decision.promote else CHALLENGER
    )
    c.set_model_version_tag(name, version, "gate_reason", decision.reason)
    if decision.promote:
        promote(settings, version, by="gate")
        return CHAMPION
    c.set_registered_model_alias(name, CHALLENGER, version)
    log.info("%s v%s is the challenger: %s", name, version, decision.reason)
    return CHALLENGER


def promote(settings: Settings, version: str, by: str = "manual") -> None:
    """Make `version` the champion, remembering the one it replaces for `rollback`."""
    c = client(settings)
    name = settings.model.name
    try:
        c.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelRegistryError(f"model {name!r} has no version {version}") from exc
    current = alias_version(settings, CHAMPION)
    if current == version:
        log.info("%s v%s is already the champion", name, version)
        return
    if current is not None:
        c.set_model_version_tag(name, version, "previous_champion", current)
    c.set_model_version_tag(name, version, "promoted_at", _now())
    c.set_model_version_tag(name, version, "promoted_by", by)
    c.set_registered_model_alias(name, CHAMPION, version)
    if alias_version(settings, CHALLENGER) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    log.info("%s v%s is the champion (was %s; by %s)", name, version, current, by)


def rollback(settings: Settings) -> str:
    """Give `champion` back to the version it replaced; returns that version."""
    c = client(settings)
    name = settings.model.name
    current = alias_version(settings, CHAMPION)
    if current is None:
        raise ModelRegistryError(f"model {name!r} has no champion to roll back")
    previous = c.get_model_version(name, current).tags.get("previous_champion")
    if not previous:
        raise ModelRegistryError(f"{name} v{current} has no previous champion to roll back to")
    c.set_model_version_tag(name, current, "rolled_back_at", _now())
    c.set_registered_model_alias(name, CHAMPION, previous)
    log.info("%s: champion rolled back from v%s to v%s", name, current, previous)
    return previous


def test_auc(settings: Settings, version: str) -> float | None:
    """The test AUC a version was evaluated with when it was trained (None: unknown)."""
    try:
        run_id = client(settings).get_model_version(settings.model.name, version).run_id
        value = client(settings).get_run(str(run_id)).data.metrics.get("test_roc_auc")
    except MlflowException:
        return None
    return None if value is None else float(value)


def version_tag(settings: Settings, version: str, key: str) -> str | None:
    """One tag of a registered version (None when absent)."""
    tags = client(settings).get_model_version(settings.model.name, version).tags
    return tags.get(key) or None


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every registered version, newest first."""
    c = client(settings)
    name = settings.model.name
    try:
        aliases_of: dict[str, list[str]] = {}
        for alias, version in c.get_registered_model(name).aliases.items():
            aliases_of.setdefault(str(version), []).append(alias)
    except MlflowException:
        return []
    versions = c.search_model_versions(f"name = '{name}'")
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        auc = mv.tags.get("test_auc")
        out.append(
            VersionInfo(
                version=str(mv.version),
                aliases=sorted(aliases_of.get(str(mv.version), [])),
                test_auc=float(auc) if auc else None,
                run_id=str(mv.run_id),
                created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                gate_reason=mv.tags.get("gate_reason"),
            )
        )
    return out


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds")
