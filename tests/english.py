"""What would give English away on a pt-BR screen: the catalog's msgids that pt-BR says
otherwise (unit tests on an in-memory engine and real-engine sessions share it)."""

from __future__ import annotations

import functools
import re

from babel.messages.pofile import read_po

from orchestrator import messages

PO = messages.LOCALE / "pt_BR" / "LC_MESSAGES" / "guestlab.po"
PLACEHOLDER = re.compile(r"\{[a-z_]*\}|%\([a-z_]+\)s")


@functools.cache
def english_phrases() -> tuple[str, ...]:
    """The literal parts of each msgid whose translation differs; single words only when
    capitalized (PASS, Score), since a Portuguese text may name a file, a command or an
    English term ("machine ID") in lower case."""
    with PO.open("rb") as f:
        po = read_po(f)
    phrases = set()
    for entry in po:
        if not entry.id or not isinstance(entry.id, str) or entry.string == entry.id:
            continue
        for part in PLACEHOLDER.split(entry.id):
            part = part.strip(" .:;,()`?")
            words = re.findall(r"[A-Za-z]+", part)
            # a command line (`guestlab reset ID`) or an option (`--base-url`) reads the
            # same in both languages
            sentence = len(words) >= 2 and "guestlab" not in part and not part.startswith("-")
            kept = part in entry.string  # a name the translation keeps (`FILE`, `PID 1`)
            if not kept and (
                sentence or (len(words) == 1 and part[0].isupper() and len(part) >= 4)
            ):
                phrases.add(part)
    return tuple(sorted(phrases))


def english_in(text: str) -> list[str]:
    """The catalog's English phrases that `text` shows, as whole words."""
    flat = " ".join(text.split())
    return [p for p in english_phrases() if re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", flat)]
