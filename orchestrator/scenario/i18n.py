"""Student-facing texts in the student's language.

A scenario may carry `translations:` (see docs/scenario-format.md): per language tag, the
metadata title, the description, and per task its title, instructions, hints and, by
position, each check's name and fail message. `pick_language` chooses the language from
the `--lang` option, $GUESTLAB_LANG or the locale; `localize` returns the scenario with
those texts swapped in. It runs before rendering, so a translated text uses templates
(`{{ params.x }}`) exactly as the English one does. Whatever a translation leaves out
stays in English.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the models load only where a scenario does: picking a language is light
    from orchestrator.scenario.model import Scenario

DEFAULT = "en"
#: languages that guestlab's scenarios are written in; a scenario may add others
KNOWN = ("en", "pt-BR")
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


def normalize(tag: str) -> str:
    """`pt_BR.UTF-8`, `pt-br`, `pt_BR@euro` -> `pt-BR`; `C`, `POSIX`, `` -> ``."""
    base = re.split(r"[.@]", tag.strip(), maxsplit=1)[0].replace("_", "-")
    if base in ("", "C", "POSIX"):
        return ""
    parts = base.split("-")
    lang = parts[0].lower()
    if not re.fullmatch(r"[a-z]{2,3}", lang):
        return ""
    rest = [p.upper() if len(p) == 2 else p for p in parts[1:] if p]
    return "-".join([lang, *rest])


def match(tag: str, available: Iterable[str] = KNOWN) -> str | None:
    """The available language `tag` asks for: exact, else same language (`pt` -> `pt-BR`)."""
    wanted = normalize(tag)
    if not wanted:
        return None
    choices = list(available)
    lowered = {c.lower(): c for c in choices}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]
    lang = wanted.split("-")[0]
    same = [c for c in choices if c.split("-")[0].lower() == lang]
    return same[0] if same else None


def pick_language(
    option: str | None,
    env: Mapping[str, str] | None = None,
    available: Iterable[str] = KNOWN,
) -> str:
    """The language for student-facing texts: `--lang`, else $GUESTLAB_LANG, else the
    locale (LC_ALL, LC_MESSAGES, LANG, the first one set); `en` when none is known.

    The first of them that is given decides: an unknown language there means English,
    not the next source.
    """
    environ = os.environ if env is None else env
    choices = list(available)
    # POSIX precedence: the first locale variable that is set decides, even if it is "C"
    locale = next((environ[v] for v in LOCALE_VARIABLES if environ.get(v)), None)
    # the first of them that is given decides; it may list several (`pt_BR:en`)
    chosen = next((c for c in (option, environ.get("GUESTLAB_LANG"), locale) if c), "")
    for part in chosen.split(":"):
        found = match(part, choices)
        if found:
            return found
    return DEFAULT


def languages(scenario: Scenario) -> list[str]:
    """English and every language the scenario has a translation for."""
    return [DEFAULT, *scenario.translations]


def localize(scenario: Scenario, lang: str) -> Scenario:
    """A copy of `scenario` whose student-facing texts are in `lang` where translated."""
    tag = match(lang, scenario.translations) if lang else None
    if tag is None:
        return scenario
    tr = scenario.translations[tag]
    from orchestrator.scenario.model_base import dump, parse

    data: dict[str, Any] = dump(scenario)
    if tr.metadata.title is not None:
        data["metadata"]["title"] = tr.metadata.title
    if tr.description is not None:
        data["description"] = tr.description
    for task in data["tasks"]:
        text = tr.tasks.get(task["id"])
        if text is None:
            continue
        for field in ("title", "instructions", "hints"):
            value = getattr(text, field)
            if value is not None:
                task[field] = list(value) if field == "hints" else value
        for check, check_text in zip(task["checks"], text.checks, strict=False):
            for field in ("name", "fail_message"):
                value = getattr(check_text, field)
                if value is not None:
                    check[field] = value
    from orchestrator.scenario.model import Scenario

    return parse(Scenario, data)
