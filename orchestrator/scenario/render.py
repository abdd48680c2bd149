"""Template rendering (Jinja2, sandboxed, strict); per-student values are in params.py."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from orchestrator.errors import Problem, ScenarioError, UsageError
from orchestrator.messages import _
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.model_base import dump, parse
from orchestrator.scenario.params import has_template

MAX_REPEAT = 10_000  # longest string or list a template may build with `*`


class RenderError(UsageError):
    """A template could not be rendered; the message says why, for the author."""


# --- templates --------------------------------------------------------------------------


class _Vars:
    """The names a template reads as `label.NAME`; no methods for a template to reach."""

    __slots__ = ("_label", "_values")

    def __init__(self, label: str, values: Mapping[str, str]) -> None:
        self._label = label
        self._values = values


class _Environment(SandboxedEnvironment):
    """The sandbox, plus clear errors for unknown names and no memory-eating operators."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A plain dict would answer `params.items` with its method, not the parameter.
        if isinstance(obj, _Vars):
            return self._lookup(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, _Vars):
            return self._lookup(obj, argument)
        return super().getitem(obj, argument)

    def _lookup(self, obj: _Vars, name: Any) -> Any:
        if isinstance(name, str) and name in obj._values:
            return obj._values[name]
        known, said = ", ".join(sorted(obj._values)), f"{obj._label}.{name}"
        if not known:
            return self.undefined(hint=_("`{name}` is not defined (known: none)").format(name=said))
        hint = _("`{name}` is not defined (known: {known})").format(name=said, known=known)
        return self.undefined(hint=hint)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError(_("the ** operator is not allowed in scenario templates"))
        for seq, times in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
            if sized and len(seq) * times > MAX_REPEAT:
                said = _("a template may not build more than {count} items")
                raise SecurityError(said.format(count=MAX_REPEAT))
        return super().call_binop(context, operator, left, right)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=2048)
def _compile(text: str) -> Template:
    # Cached: every student of a class renders the same strings.
    return _ENV.from_string(text)


MachineFacts = Mapping[str, Mapping[str, str]]
"""machine name -> {backend, kind, virt, os}: what the lab knows of each machine."""


def render_text(
    text: str, params: Mapping[str, str], student: str, machines: MachineFacts | None = None
) -> str:
    """Render one string; raise RenderError saying what is wrong with the template."""
    if not has_template(text):
        return text  # also keeps regexes such as `[0-9a-f]{32}` intact
    facts = {n: _Vars(f"machines.{n}", dict(f)) for n, f in (machines or {}).items()}
    try:
        template = _compile(text)
        return template.render(
            params=_Vars("params", params),
            student=_Vars("student", {"id": student}),
            machines=_Vars("machines", facts),
        )
    except TemplateSyntaxError as e:
        where = f" (template line {e.lineno})" if "\n" in text.rstrip("\n") else ""
        raise RenderError(
            _("template syntax error: {message}{where}").format(message=e.message, where=where)
        ) from None
    except SecurityError as e:
        raise RenderError(_("template not allowed: {error}").format(error=e)) from None
    except UndefinedError as e:
        raise RenderError(_("template: {message}").format(message=_undefined(str(e)))) from None
    except TemplateError as e:
        raise RenderError(_("template error: {error}").format(error=e)) from None
    except Exception as e:
        # Whatever fails inside an author's template is a problem of the scenario, not a crash.
        raise RenderError(
            _("template failed: {name}: {error}").format(name=type(e).__name__, error=e)
        ) from None


#: how Jinja2 says that a template names a variable nobody gave it
_UNDEFINED = re.compile(r"""^(['"])(?P<name>.*)\1 is undefined$""")


def _undefined(message: str) -> str:
    """Jinja2's "'x' is undefined" said with what a template can use; our own hint (a name
    under params, student or machines) as it is."""
    found = _UNDEFINED.match(message)
    if found is None:
        return message
    return _(
        "'{name}' is undefined (templates can use params.NAME, student.id and machines.NAME.FACT)"
    ).format(name=found["name"])


def render_scenario(
    scenario: Scenario,
    params: dict[str, str],
    student: str,
    machines: MachineFacts | None = None,
) -> Scenario:
    """A copy of `scenario` with every string rendered for `student`, validated again."""
    file = f"<{scenario.id}>"
    problems: list[Problem] = []

    def walk(value: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):
            try:
                return render_text(value, params, student, machines)
            except RenderError as e:
                problems.append(Problem(file, 0, 0, _dotted(loc), str(e)))
                return value
        if isinstance(value, dict):
            return {k: walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    data = walk(dump(scenario), ())
    if problems:
        raise ScenarioError(problems)
    try:
        return parse(Scenario, data)
    except ValidationError as e:
        from orchestrator.scenario.explain import message  # imports render: here, not above

        said = _("after rendering: {problem}")
        raise ScenarioError(
            [
                Problem(file, 0, 0, _dotted(loc), said.format(problem=message(err, loc)))
                for err in e.errors(include_url=False)
                for loc in [tuple(err["loc"])]
            ]
        ) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)
