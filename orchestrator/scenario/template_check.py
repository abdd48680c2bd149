"""Every template in a scenario file compiled and rendered once, with sample values.

A misspelt `{{ params.NAME }}` or `{{ machines.NAME.virt }}` is reported by `validate`, at
its line, not when a student runs the lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orchestrator.messages import _
from orchestrator.scenario import render
from orchestrator.scenario.located import Loc, Report
from orchestrator.scenario.params import has_template

MAX_TEMPLATES = 500  # compiling one costs ~0.2 ms; real scenarios use a few dozen
SAMPLE_STUDENT = "student"


def _strings(value: Any) -> Iterator[tuple[Loc, str]]:
    """Every string value with its location, depth-first without recursion."""
    stack: list[tuple[Loc, Any]] = [((), value)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            yield loc, value
        elif isinstance(value, dict):
            stack.extend(((*loc, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))


def _sample_params(raw: Any) -> dict[str, str]:
    """A value for every parameter name in the file, however malformed its spec."""
    params: dict[str, str] = {}
    if not isinstance(raw, dict):
        return params
    for name, spec in raw.items():
        choices = spec.get("choices") if isinstance(spec, dict) else None
        length = spec.get("length") if isinstance(spec, dict) else None
        if isinstance(choices, list) and choices:
            params[name] = str(choices[0])
        else:
            ok = isinstance(length, int) and 1 <= length <= 64
            params[name] = "x" * (length if ok else 8)
    return params


def _sample_machines(raw: Any) -> dict[str, dict[str, str]]:
    """Facts for every machine name in the file, as a backend would give them."""
    facts = {"backend": "docker", "kind": "container", "virt": "docker", "os": "debian"}
    names = [m.get("name") for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
    return {n: facts for n in names if isinstance(n, str)}


def check_templates(data: dict[str, Any], report: Report) -> None:
    params = _sample_params(data.get("parameters"))
    machines = _sample_machines(data.get("machines"))
    count = 0
    for loc, text in _strings(data):
        if not has_template(text):
            continue
        count += 1
        if count > MAX_TEMPLATES:
            said = _("more than {count} strings use templates").format(count=MAX_TEMPLATES)
            report.add(loc, said)
            return
        try:
            render.render_text(text, params, SAMPLE_STUDENT, machines)
        except render.RenderError as e:
            report.add(loc, str(e))
