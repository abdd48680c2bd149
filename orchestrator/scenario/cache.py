"""Validated scenarios kept by content, so that commands on an unchanged file start fast.

Loading a scenario reads YAML, validates it with pydantic, checks its references and
templates, then localizes and renders it (Jinja2), each step validated again: a third of
a second of imports and work for every `show`, `check` or `hint`. This cache keeps the
result of those steps, keyed by what decides it: the SHA-256 of the file's bytes, its
path (the `labs/` folder beside it is checked too), guestlab's version, a hash of the
modules that define the format and its checks, and the step's own inputs (language,
student, parameters, machine facts). A hit imports none of YAML, pydantic and Jinja2:
the format's types are plain dataclasses (`model_base`), built here from the entry.
An entry is used only when its key is the same, character for character; anything else
(another key, a corrupt or foreign file, a shape the types do not have) is ignored and
written anew after validating. An invalid scenario raises ScenarioError and is never
kept. The folder holds at most MAX_ENTRIES.

Why building a Scenario from an entry without pydantic is safe: guestlab writes an entry
only after pydantic (and `scenario.load`) validated that very scenario, and only when the
object built back from the entry equals the validated one; and an entry is read only
under the exact key it was written with. So the object built from it is the one
validation gave (and the types' own invariants, `__post_init__`, hold again as it is
built). The entry is JSON, never pickle: a file someone else wrote can at worst
be ignored, never run. Like the state store beside it, the folder is trusted as far as
its permissions keep others out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import __version__, paths
from orchestrator.scenario.model_base import dump, field_types, is_type, required
from orchestrator.scenario.source import read_source

if TYPE_CHECKING:
    from orchestrator.scenario.model import Scenario

MAX_ENTRIES = 200
#: the modules that decide whether a file is valid and what a loaded, localized or
#: rendered Scenario holds: a change to any of them makes every entry stale
SCHEMA_SOURCES = (
    "model.py",
    "model_base.py",
    "translation_model.py",
    "load.py",
    "source.py",
    "yamlread.py",
    "references.py",
    "template_check.py",
    "i18n.py",
    "render.py",
    "cache.py",
)
_schema: list[str] = []


def folder() -> Path:
    return paths.home() / "cache" / "scenarios"


def schema_hash() -> str:
    """A hash of the format's source, read once per process (a few small files); "" when
    a source cannot be read, and then nothing is cached."""
    if not _schema:
        digest = hashlib.sha256()
        here = Path(__file__).parent
        try:
            for name in SCHEMA_SOURCES:
                digest.update(name.encode() + b"\0" + (here / name).read_bytes())
        except OSError:
            _schema.append("")
        else:
            _schema.append(digest.hexdigest())
    return _schema[0]


def localized(path: Path, lang: str) -> tuple[Scenario, list[str]]:
    """The scenario in `path`, its texts in `lang`, and its key (for `remembered` steps
    that start from it); ScenarioError when the file is invalid."""
    raw = read_source(path)
    key = [
        "file",
        str(path.resolve()),
        hashlib.sha256(raw).hexdigest(),
        "lang",
        lang,
    ]

    def validate() -> Scenario:
        from orchestrator.scenario.i18n import localize
        from orchestrator.scenario.load import load_bytes

        return localize(load_bytes(raw, path), lang)

    return remembered(key, validate), key


def remembered(parts: Sequence[str], validate: Callable[[], Scenario]) -> Scenario:
    """The scenario `validate` returns for these key parts: built from the cache when it
    holds an entry of exactly this key, else validated (and then kept)."""
    if not schema_hash():
        return validate()
    key = "\0".join([__version__, schema_hash(), *parts])
    file = folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"
    entry = read_entry(file)
    if entry is not None and entry.get("key") == key:
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
            return _scenario(entry["scenario"])
    scenario = validate()  # a ScenarioError leaves the cache as it was
    data = json.loads(json.dumps(dump(scenario)))  # as the entry will give it back
    if _scenario(data) == scenario:  # the round trip gives back what was validated
        write_entry(file, {"key": key, "scenario": data})
    return scenario


def _scenario(data: Any) -> Scenario:
    from orchestrator.scenario.model import Scenario

    return _build(Scenario, data)


def _build(cls: type, data: Any) -> Any:
    """The type from a validated dump, nested types included, without pydantic; a key the
    type does not have or a required one missing is a foreign entry."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: not a mapping")
    fields = field_types(cls)
    if not set(data) <= set(fields):
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(set(data) - set(fields))}")
    missing = [n for n in required(cls) if n not in data]
    if missing:
        raise ValueError(f"{cls.__name__}: missing {missing}")
    return cls(**{name: _value(fields[name], value) for name, value in data.items()})


def _value(tp: Any, value: Any) -> Any:
    """`value` as type `tp` holds it: nested types built, lists and dicts walked."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _value(args[0], value)
    if is_type(tp):
        return _build(tp, value)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) != 1:  # the format has no such union; refuse rather than guess
            raise TypeError(f"cannot build a union of {members}")
        return _value(members[0], value)
    if origin is list:
        if not isinstance(value, list):
            raise TypeError("not a list")
        return [_value(args[0], v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError("not a mapping")
        return {k: _value(args[1], v) for k, v in value.items()}
    return value


def read_entry(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_entry(path: Path, entry: dict[str, Any]) -> None:
    """Whole or not at all (a temporary file renamed), then the oldest entries beyond
    MAX_ENTRIES removed; a cache that cannot be written only makes the next run slower."""
    with contextlib.suppress(OSError):
        paths.ensure(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, path)
        _prune(path.parent)


def _prune(where: Path) -> None:
    entries = []
    for p in where.glob("*.json"):
        with contextlib.suppress(OSError):
            entries.append((p.stat().st_mtime, p))
    entries.sort(reverse=True)
    for _mtime, p in entries[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            p.unlink()
