"""What every model of the scenario format shares: strict, frozen, non-empty texts."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    """Unknown keys are errors, never ignored; a loaded scenario does not change.

    The validators are built when a model first validates, not when it is defined: a
    scenario built from the cache of validated ones (`scenario.cache`) needs none."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
