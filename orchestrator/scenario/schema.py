"""The scenario format as JSON Schema, for editors that complete and check YAML."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from orchestrator.scenario.model import Scenario

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _WithDefaults(GenerateJsonSchema):
    """Also the defaults a factory makes (a list or mapping field's `[]` or `{}`): the
    types are frozen dataclasses, whose mutable defaults can only be made that way."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (format version 1)."""
    schema = TypeAdapter(Scenario).json_schema(schema_generator=_WithDefaults)
    schema["title"] = "guestlab scenario (apiVersion guestlab/v1)"
    return {"$schema": SCHEMA_DIALECT, **schema}
