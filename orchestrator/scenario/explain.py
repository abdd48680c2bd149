"""The model's complaints in the author's terms: what pydantic found, said of the file.

`report_validation` turns one pydantic error into a located problem: an unknown key
points at the key and names the allowed ones (and the nearest), a bad pattern says what
the field expects, a wrong type says what was found instead. Each sentence is guestlab's
own, in the reader's language; pydantic's English `msg` is said only for an error type
not known here. Field names, keys and values are quoted as the file has them.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from orchestrator.messages import ENGLISH, N_, _, language, ngettext
from orchestrator.scenario.located import Loc, Report, clip
from orchestrator.scenario.model import NAME, PARAMETER, SIZE, TASK_ID, Scenario
from orchestrator.scenario.model_base import field_types, is_type
from orchestrator.scenario.params import has_template
from orchestrator.scenario.translation_model import LANGUAGE

#: what pydantic calls a key the type does not have: the format's types are dataclasses
UNKNOWN_KEY = "unexpected_keyword_argument"

#: what a value of each pattern the format uses must be, said whole; `{value}` is what the
#: file holds
_PATTERNS = {
    NAME: N_(
        "must be lowercase letters and digits joined by single '-' (at most 40 characters)"
        " (got {value})"
    ),
    TASK_ID: N_(
        "must be lowercase letters, digits, '-' and '_' (at most 63, starting with a letter"
        " or digit) (got {value})"
    ),
    SIZE: N_("must be a size such as 512K, 256M or 1G (got {value})"),
    r"^\d+[smh]$": N_("must be a duration such as 90s, 15m or 1h (got {value})"),
    r"^/": N_("must be an absolute path (starting with /) (got {value})"),
    r"^0?[0-7]{3,4}$": N_('must be an octal mode such as "0644" (quoted) (got {value})'),
    PARAMETER: N_("must be letters, digits and '_', not starting with a digit (got {value})"),
    LANGUAGE: N_("must be a language tag such as pt-BR or es (got {value})"),
}

#: pydantic's error types that one sentence says: `{value}` is what the file holds, `{kind}`
#: what sort of value it is, and the other names pydantic's own (`{ge}`: the limit)
_SAID = {
    "missing": N_("required field missing"),
    "string_too_short": N_("must not be empty"),
    "list_type": N_("expected a list, got {kind}"),
    "dict_type": N_("expected a mapping, got {kind}"),
    "dataclass_type": N_("expected a mapping, got {kind}"),
    "bool_type": N_("expected true or false (got {value})"),
    "bool_parsing": N_("expected true or false (got {value})"),
    "int_type": N_("expected a whole number (got {value})"),
    "int_parsing": N_("expected a whole number (got {value})"),
    "int_from_float": N_("expected a whole number (got {value})"),
    "float_type": N_("expected a number (got {value})"),
    "float_parsing": N_("expected a number (got {value})"),
    "finite_number": N_("must be a finite number (got {value})"),
    "greater_than": N_("must be greater than {gt} (got {value})"),
    "greater_than_equal": N_("must be greater than or equal to {ge} (got {value})"),
    "less_than": N_("must be less than {lt} (got {value})"),
    "less_than_equal": N_("must be less than or equal to {le} (got {value})"),
}


def report_validation(err: Any, report: Report) -> None:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    # A spot the YAML stage already complained about (bad tag, bad number) says it best.
    # pydantic marks a bad dict key with a trailing "[key]"; an unknown field may be named so
    if loc and loc[-1] == "[key]" and kind != UNKNOWN_KEY:
        loc = loc[:-1]
        report.add(loc, message(err, loc), key=True, unless_reported=True)
    elif kind == UNKNOWN_KEY:
        report.add(loc, message(err, loc), key=True, unless_reported=True)
    elif kind == "missing":
        report.add(loc, message(err, loc), pos=report.where(loc[:-1]))
    else:
        report.add(loc, message(err, loc), unless_reported=True)


def message(err: Any, loc: Loc) -> str:
    """One pydantic error said in the author's terms, in the reader's language; an error
    type not known here keeps pydantic's own (English) words."""
    kind: str = err["type"]
    ctx = {k: _number(v) for k, v in (err.get("ctx") or {}).items()}
    value = err.get("input")
    got = _describe(value)
    if kind in _SAID:
        return _(_SAID[kind]).format_map({**ctx, "value": got, "kind": _kind(value)})
    if kind == UNKNOWN_KEY:
        return _unknown_field(loc)
    if kind == "literal_error":
        choices = _literal_choices(loc)
        if choices:
            return _("must be one of: {choices} (got {value})").format(
                choices=", ".join(choices), value=got
            )
        if "expected" in ctx:
            return _("must be {expected} (got {value})").format(expected=ctx["expected"], value=got)
        return _("must be one of the allowed values (got {value})").format(value=got)
    if kind == "string_pattern_mismatch":
        return _pattern(str(ctx.get("pattern", "")), value)
    if kind == "string_type":
        if isinstance(value, int | float | bool):
            return _("expected text, got {kind}; quote it").format(kind=_kind(value))
        return _("expected text, got {kind}").format(kind=_kind(value))
    if kind in ("too_short", "too_long", "string_too_long"):
        return _length(kind, ctx, got)
    if kind == "value_error":  # our own sentence, said when the check raised it
        return str(err["msg"]).removeprefix("Value error, ")
    # a type not known here: pydantic's English, what was found said in English too
    with language(ENGLISH):
        got = _describe(value)
    english = str(err["msg"]).replace("Input should be", "must be")
    return english + (f" (got {got})" if _is_scalar(value) else "")


def _unknown_field(loc: Loc) -> str:
    fields = _fields_at(loc[:-1])
    if not fields:
        return _("unknown field")
    field, allowed = str(loc[-1]), ", ".join(fields)
    near = difflib.get_close_matches(field, fields, n=1)
    if near:
        return _("unknown field `{field}`; did you mean `{near}`? (allowed: {allowed})").format(
            field=field, near=near[0], allowed=allowed
        )
    return _("unknown field `{field}` (allowed: {allowed})").format(field=field, allowed=allowed)


def _pattern(pattern: str, value: Any) -> str:
    said = _PATTERNS.get(pattern)
    got = _describe(value)
    if said is None:
        problem = _("must be text matching {pattern} (got {value})").format(
            pattern=pattern, value=got
        )
    else:
        problem = _(said).format(value=got)
    if isinstance(value, str) and has_template(value):
        return _("{problem}; this field cannot use templates").format(problem=problem)
    return problem


def _length(kind: str, ctx: dict[str, Any], got: str) -> str:
    """A list or text shorter or longer than the format allows."""
    if kind == "too_short":
        n = int(ctx.get("min_length", 1))
        return ngettext("needs at least {n} item", "needs at least {n} items", n).format(n=n)
    n = int(ctx.get("max_length", 0))
    if kind == "too_long":
        has = ctx.get("actual_length", "?")
        said = ngettext(
            "must have at most {n} item (has {has})", "must have at most {n} items (has {has})", n
        )
        return said.format(n=n, has=has)
    said = ngettext(
        "must be at most {n} character long (got {value})",
        "must be at most {n} characters long (got {value})",
        n,
    )
    return said.format(n=n, value=got)


def _number(value: Any) -> Any:
    """A limit as pydantic writes it: 0.0 as 0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _kind(value: Any) -> str:
    """What sort of value the file holds, in the reader's language."""
    if value is None:
        return _("nothing (null)")
    if isinstance(value, bool):
        return _("a boolean ({value})").format(value=str(value).lower())
    if isinstance(value, int | float):
        return _("a number ({value})").format(value=value)
    if isinstance(value, str):
        return _("text")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, dict):
        return _("a mapping")
    return type(value).__name__


def _describe(value: Any) -> str:
    """The value itself when it is text (quoted as in Python), else what sort it is."""
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
