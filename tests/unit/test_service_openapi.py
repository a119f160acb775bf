"""/openapi.json describes the lookup responses field by field (no server, no Redis)."""

from __future__ import annotations

import dataclasses

from scorehouse.serving.client import Client, Score
from scorehouse.serving.service import ScoreResponse, create_app
from scorehouse.settings import load_settings


def _schema() -> dict:
    settings = load_settings(environ={})
    return create_app(settings, client=Client(settings, fallback=False)).openapi()


def test_openapi_lists_the_score_fields_of_single_and_batch_lookups() -> None:
    schema = _schema()
    fields = [f.name for f in dataclasses.fields(Score)]
    components = schema["components"]["schemas"]
    assert list(components["ScoreResponse"]["properties"]) == fields
    assert set(components["ScoreResponse"]["required"]) == {"entity_id", "score", "source"}
    assert components["ScoreResponse"]["properties"]["source"]["enum"] == [
        "cache",
        "fallback",
        "default",
    ]
    single = schema["paths"]["/v1/scores/{entity_id}"]["get"]["responses"]
    assert single["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScoreResponse"
    }
    assert "422" in single
    batch = components["BatchResponse"]["properties"]["results"]
    assert batch["items"] == {"$ref": "#/components/schemas/ScoreResponse"}
    health = schema["paths"]["/healthz"]["get"]["responses"]
    assert {"200", "503"} <= set(health)


def test_score_response_model_accepts_what_score_to_dict_gives() -> None:
    score = Score("17", 0.25, "default", reason="redis circuit open")
    assert ScoreResponse.model_validate(score.to_dict()).model_dump() == score.to_dict()
