"""The Docker SDK, imported when first used: `sdk.errors.NotFound`, `sdk.docker`.

docker-py brings requests and urllib3 (a tenth of a second); a command that only reads a
lab's backend (its name, capabilities) must not pay for it. Attribute access on this
module imports the SDK, so `except sdk.errors.APIError:` imports it only when an
exception reaches that clause, and then the engine was already in use.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "docker":
        return importlib.import_module("docker")
    if name == "errors":
        return importlib.import_module("docker.errors")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
