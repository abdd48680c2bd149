"""The model's complaints in the author's terms: what pydantic found, said of the file.

`report_validation` turns one pydantic error into a located problem: an unknown key
points at the key and names the allowed ones (and the nearest), a bad pattern says what
the field expects, a wrong type says what was found instead.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from orchestrator.scenario import render
from orchestrator.scenario.located import Loc, Report, clip
from orchestrator.scenario.model import NAME, PARAMETER, SIZE, TASK_ID, Scenario
from orchestrator.scenario.model_base import field_types, is_type
from orchestrator.scenario.translation_model import LANGUAGE

#: what pydantic calls a key the type does not have: the format's types are dataclasses
UNKNOWN_KEY = "unexpected_keyword_argument"

_PATTERNS = {
    NAME: "lowercase letters and digits joined by single '-' (at most 40 characters)",
    TASK_ID: "lowercase letters, digits, '-' and '_' (at most 63, starting with a letter or digit)",
    SIZE: "a size such as 512K, 256M or 1G",
    r"^\d+[smh]$": "a duration such as 90s, 15m or 1h",
    r"^/": "an absolute path (starting with /)",
    r"^0?[0-7]{3,4}$": 'an octal mode such as "0644" (quoted)',
    PARAMETER: "letters, digits and '_', not starting with a digit",
    LANGUAGE: "a language tag such as pt-BR or es",
}


def report_validation(err: Any, report: Report) -> None:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    # A spot the YAML stage already complained about (bad tag, bad number) says it best.
    # pydantic marks a bad dict key with a trailing "[key]"; an unknown field may be named so
    if loc and loc[-1] == "[key]" and kind != UNKNOWN_KEY:
        loc = loc[:-1]
        report.add(loc, _message(err, loc), key=True, unless_reported=True)
    elif kind == UNKNOWN_KEY:
        report.add(loc, _message(err, loc), key=True, unless_reported=True)
    elif kind == "missing":
        report.add(loc, "required field missing", pos=report.where(loc[:-1]))
    else:
        report.add(loc, _message(err, loc), unless_reported=True)


def _message(err: Any, loc: Loc) -> str:
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = f" (got {_describe(value)})"
    if kind == UNKNOWN_KEY:
        fields = _fields_at(loc[:-1])
        if not fields:
            return "unknown field"
        near = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        return f"unknown field `{loc[-1]}`{hint} (allowed: {', '.join(fields)})"
    if kind == "literal_error":
        choices = _literal_choices(loc)
        if choices:
            return f"must be one of: {', '.join(choices)}{got}"
        return f"must be {ctx.get('expected', 'one of the allowed values')}{got}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        message = f"must be {_PATTERNS.get(pattern, f'text matching {pattern}')}{got}"
        if isinstance(value, str) and render.has_template(value):
            message += "; this field cannot use templates"
        return message
    if kind == "string_type":
        hint = "; quote it" if isinstance(value, int | float | bool) else ""
        return f"expected text, got {_kind(value)}{hint}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}"
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}"
    if kind in ("dict_type", "dataclass_type"):
        return f"expected a mapping, got {_kind(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false{got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number{got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number{got}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    message = str(err["msg"]).replace("Input should be", "must be")
    return message + (got if _is_scalar(value) else "")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(clip(value))
    return _kind(value)


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and `| None` from a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(loc: Loc) -> Any:
    """The declared type of the value at `loc` in a Scenario, if it can be followed."""
    tp: Any = Scenario
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if is_type(tp):
            tp = field_types(tp).get(str(part))
            if tp is None:
                return None
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _fields_at(loc: Loc) -> list[str]:
    tp = _type_at(loc)
    if is_type(tp):
        return list(field_types(tp))
    return []


def _literal_choices(loc: Loc) -> list[str]:
    tp = _type_at(loc)
    if typing.get_origin(tp) is typing.Literal:
        return [str(choice) for choice in typing.get_args(tp)]
    return []
