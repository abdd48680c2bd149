"""The scenario format as JSON Schema, for editors that complete and check YAML."""

from __future__ import annotations

from typing import Any

from orchestrator.scenario.model import Scenario

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (format version 1)."""
    schema = Scenario.model_json_schema()
    schema["title"] = "guestlab scenario (apiVersion guestlab/v1)"
    return {"$schema": SCHEMA_DIALECT, **schema}
