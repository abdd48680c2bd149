"""The seat's own strings in the student's language: one JSON catalog per language.

The language is `?lang=`, else the browser's Accept-Language (in its order of
preference), else English. Scenario texts follow the same choice through
`scenario.i18n.localize`; a string missing from a catalog falls back to English.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from orchestrator.scenario.i18n import DEFAULT, match

CATALOG = Path(__file__).resolve().parent / "catalog"


@functools.cache
def catalog(lang: str) -> dict[str, str]:
    english = json.loads((CATALOG / f"{DEFAULT}.json").read_text(encoding="utf-8"))
    if lang == DEFAULT:
        return english
    own = json.loads((CATALOG / f"{lang}.json").read_text(encoding="utf-8"))
    return {**english, **own}


def available() -> list[str]:
    return sorted(p.stem for p in CATALOG.glob("*.json"))


def accepted(header: str) -> list[str]:
    """The tags of an Accept-Language header, most wanted first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, i, tag))
    return [tag for _q, _i, tag in sorted(ranked)]


def choose(query: str | None, accept_language: str | None) -> str:
    """The page's language: the query's if known, else the browser's first known one."""
    langs = available()
    if query:
        found = match(query, langs)
        if found:
            return found
    for tag in accepted(accept_language or ""):
        found = match(tag, langs)
        if found:
            return found
    return DEFAULT
