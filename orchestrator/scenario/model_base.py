"""What every type of the scenario format shares: frozen dataclasses that pydantic
validates into, and `Rule`, which says to pydantic what `pydantic.Field(...)` would.

The types themselves import no pydantic: a scenario built from the cache of validated
ones (`scenario.cache`) is made of them without loading it (pydantic and pydantic-core
cost a command about 0.06 s to import). pydantic reads their annotations when it first
validates one (`parse`), so these dataclasses are the format's one definition: what a
file may hold, and what the rest of guestlab reads.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import TypeAdapter

T = TypeVar("T")


class Rule:
    """A field's constraints as pydantic-core names them (pattern, min_length,
    max_length, ge, le, gt), its description in the JSON Schema, and a `check` run after
    them with the fields validated before it (a ValueError makes the value invalid).

    pydantic calls the two hooks below while it builds a type's schema; nothing else
    does, so defining a field with a Rule imports nothing."""

    def __init__(
        self,
        *,
        description: str = "",
        check: Callable[[Any, dict[str, Any]], Any] | None = None,
        **constraints: Any,
    ) -> None:
        self.description, self.check, self.constraints = description, check, constraints

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        # the same keys `Field(pattern=..., max_length=...)` sets: the same errors
        schema = {**handler(source), **self.constraints}
        if self.check is None:
            return schema
        from pydantic_core import core_schema

        check = self.check
        return core_schema.with_info_after_validator_function(
            lambda value, info: check(value, info.data), schema
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> Any:
        found = handler(schema)
        if self.description:
            found["description"] = self.description
        return found


Text = Annotated[str, Rule(min_length=1)]


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def strict(cls: type[T]) -> type[T]:
    """A type of the format: a frozen dataclass, built by keyword, whose unknown keys are
    errors when pydantic validates it (never ignored)."""
    # Python 3.11's `dataclass` compiles each method it writes on its own: two thirds of
    # the cost of defining the format. The ones below do the same for every type, shared.
    shared = {"__init__": _init, "__setattr__": _frozen, "__delattr__": _frozen}
    shared |= {"__eq__": _eq, "__hash__": _hash, "__repr__": _repr}
    for name, method in shared.items():
        setattr(cls, name, method)
    made = dataclasses.dataclass(init=False, eq=False, repr=False)(cls)  # frozen by _frozen
    made.__pydantic_config__ = {"extra": "forbid"}  # type: ignore[attr-defined]
    _defaults[made] = {f.name: (f.default, f.default_factory) for f in dataclasses.fields(made)}
    return made


#: each type's fields and their default (or default factory), for `_init`
_defaults: dict[type, dict[str, tuple[Any, Any]]] = {}


def _init(self: object, **values: Any) -> None:
    """What `dataclass` writes as `__init__` for a frozen class built by keyword."""
    fields = _defaults[type(self)]
    unknown = values.keys() - fields.keys()
    if unknown:
        raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(unknown)}")
    missing = dataclasses.MISSING
    for name, (default, factory) in fields.items():
        if name in values:
            value = values[name]
        elif factory is not missing:
            value = factory()
        elif default is not missing:
            value = default
        else:
            raise TypeError(f"{type(self).__name__}() missing keyword argument {name!r}")
        object.__setattr__(self, name, value)
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _frozen(self: object, name: str, *_value: Any) -> None:
    """A scenario does not change once made: neither set nor delete a field."""
    raise dataclasses.FrozenInstanceError(f"cannot change field {name!r}")


def _eq(self: object, other: object) -> bool:
    if type(other) is not type(self):
        return NotImplemented
    return vars(self) == vars(other)


def _hash(self: object) -> int:
    return hash(tuple(vars(self).values()))


def _repr(self: object) -> str:
    fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
    return f"{type(self).__qualname__}({fields})"


def parse(cls: type[T], data: Any) -> T:
    """`data` validated into `cls` by pydantic; pydantic.ValidationError when invalid."""
    return _adapter(cls).validate_python(data)


@functools.cache
def _adapter(cls: type[T]) -> TypeAdapter[T]:
    from pydantic import TypeAdapter  # here: only validating needs it

    return TypeAdapter(cls)


def dump(value: Any) -> Any:
    """A value of the format as plain data (dicts, lists, texts and numbers), every field
    included: what `parse` takes back."""
    return dataclasses.asdict(value)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Each field of a type of the format and its declared type, Annotated kept."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def required(cls: type) -> list[str]:
    """The fields of a type that have no default."""
    missing = dataclasses.MISSING
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is missing and f.default_factory is missing
    ]


def is_type(tp: Any) -> bool:
    """Whether `tp` is one of the format's types (a dataclass)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)
