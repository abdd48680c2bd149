"""Text from a machine is data: what makes it safe for a terminal, a log, XML and CSV.

A student with root in a lab machine chooses every byte a check or a probe prints. Before
such text reaches anything on the host it goes through one of these functions:

- `clean`: the text without control sequences (C0 except newline and tab, DEL, C1, every
  ESC sequence including CSI and OSC, bidirectional overrides) and with lone surrogates
  replaced; what is left only prints as itself.
- `markup`: `clean`, then escaped for rich's markup, for f-strings passed to `print`.
- `xml`: `clean`, then every character XML 1.0 forbids replaced by U+FFFD.
- `cap`: a string cut to a length, saying so.
- `data`: `clean` applied to every string (and key) of a JSON-able structure.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"

# ESC followed by: a CSI (parameters, intermediates, a final byte); a control string (OSC,
# DCS, SOS, PM, APC) up to its terminator (BEL or ST) or the end of the text; any other
# single character (two-character escapes such as ESC c, which resets the terminal). The
# 8-bit forms (CSI as U+009B, OSC as U+009D, ...) likewise. A sequence cut short by the end
# of the text is removed whole.
_SEQUENCE = re.compile(
    r"""
    (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?       # CSI
  | (?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|\Z)  # control strings
  | \x1b [\x20-\x2f]* [\x30-\x7e]?                                # other escapes
    """,
    re.VERBOSE | re.DOTALL,
)
# C0 but tab and newline, DEL, C1; bidirectional embeddings, overrides and isolates (they
# reorder what a terminal shows); lone surrogates (a decoder's leftovers, unprintable)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# what XML 1.0 allows: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF];
# compiled when first used (by JUnit reports only): its ranges take milliseconds to compile
_NOT_XML = "[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def clean(text: str) -> str:
    """`text` without anything a terminal would act on instead of printing."""
    if text.isprintable() and text.isascii():
        return text  # the common case, at no cost
    text = _SEQUENCE.sub("", text)
    return _CONTROL.sub(lambda m: REPLACEMENT if "\ud800" <= m[0] <= "\udfff" else "", text)


_BEFORE_BRACKET = re.compile(r"(\\*)\[")
_TAG_AFTER_BRACKET = re.compile(r"[a-z#/@][^[]*?]")  # what rich takes for a tag after `[`
_TRAILING_BACKSLASHES = re.compile(r"\\+\Z")  # \Z: `$` would also match before a final newline


def _escape_bracket(m: re.Match[str]) -> str:
    slashes = m.group(1)
    if _TAG_AFTER_BRACKET.match(m.string, m.end()):
        return slashes * 2 + "\\["  # rich halves the run before a tag, an odd one escapes it
    return slashes + "\\["  # elsewhere rich drops just the one backslash of each `\[`


def markup(text: str) -> str:
    """`text` ready to sit inside rich markup: cleaned, every `[` escaped.

    rich treats backslashes before a `[` in two ways (before a tag it halves them, elsewhere
    it drops one), and its own `escape` leaves alone a `[` that starts no tag; a trailing
    run of backslashes meets the caller's closing tag, so it is doubled.
    """
    t = _BEFORE_BRACKET.sub(_escape_bracket, clean(text))
    return _TRAILING_BACKSLASHES.sub(lambda m: m.group(0) * 2, t)


def xml(text: str) -> str:
    """`text` cleaned, with whatever XML 1.0 forbids replaced: always a valid XML string."""
    return re.sub(_NOT_XML, REPLACEMENT, clean(text))  # re's cache keeps it compiled


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... ({len(text) - limit} more characters not shown)"


def data(value: Any) -> Any:
    """A JSON-able structure with every string in it cleaned (keys too)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [data(v) for v in value]
    return value
