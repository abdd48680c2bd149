"""Text from machines is data: no byte a student prints acts on a terminal or breaks an export."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from orchestrator import junit, textsafe

HOSTILE = (
    "ok \x1b]52;c;cm0gLXJmIH4=\x07 clip"  # OSC 52: write the clipboard
    " \x1b]0;owned\x1b\\ title"  # OSC 0 with ST: the window title
    " \x1b[2J\x1b[1;1H\x1b[?25l cursor"  # CSI: clear, move, hide the cursor
    " \x9b31m c1-csi \x9d0;x\x07 c1-osc"  # the same in 8-bit C1 form
    " \x1bc reset \x07 bell \x08 back \r return \x7f del"
    " \u202eevil\u202c bidi [/nope] [bold]x[/bold] \\"
)

any_text = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF))
# what a machine's bytes become on the host: decoded with replacement, as the probes do
machine_text = st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))
texts = st.one_of(any_text, machine_text, st.just(HOSTILE))


def _controls(text: str) -> list[str]:
    return [
        c
        for c in text
        if (ord(c) < 0x20 and c not in "\n\t")
        or 0x7F <= ord(c) <= 0x9F
        or 0x202A <= ord(c) <= 0x202E
    ]


def test_clean_removes_every_escape_and_keeps_the_words() -> None:
    out = textsafe.clean(HOSTILE)
    assert _controls(out) == []
    for word in ("ok", "clip", "title", "cursor", "c1-csi", "c1-osc", "reset", "bell", "del"):
        assert word in out, word
    assert "cm0gLXJmIH4" not in out and "owned" not in out  # the sequences' payloads go too
    assert "[/nope]" in out and "evil" in out
    assert textsafe.clean("line\n\tindented") == "line\n\tindented"


def test_a_sequence_cut_short_is_removed_whole() -> None:
    assert textsafe.clean("a\x1b]52;c;AAAA") == "a"
    assert textsafe.clean("a\x1b[12") == "a"
    assert textsafe.clean("a\x1b") == "a"


@settings(max_examples=300, deadline=None)
@given(texts)
def test_clean_leaves_no_control_character(text: str) -> None:
    out = textsafe.clean(text)
    assert "\x1b" not in out and _controls(out) == []
    assert not any("\ud800" <= c <= "\udfff" for c in out)
    assert textsafe.clean(out) == out  # clean text stays as it is


@settings(max_examples=300, deadline=None)
@given(texts)
def test_markup_never_raises_and_shows_the_clean_text(text: str) -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    # as the CLI uses it: inside markup of its own (a trailing backslash is doubled then)
    shown = Text.from_markup(f"[bold]{textsafe.markup(text)}[/bold]")
    assert shown.plain == textsafe.clean(text)
    console.print(f"[bold]{textsafe.markup(text)}[/]")
    assert "\x1b]" not in console.file.getvalue()  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(texts)
def test_xml_text_always_parses(text: str) -> None:
    safe = textsafe.xml(text)
    el = ET.Element("case", message=safe)
    el.text = safe
    parsed = ET.fromstring(ET.tostring(el, encoding="unicode"))
    assert (parsed.text or "") == safe and parsed.get("message") == safe


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_a_junit_document_of_any_text_parses(messages: list[str]) -> None:
    cases = [junit.Case(m, m, failure=m) for m in messages]
    doc = junit.document([junit.Suite(messages[0], cases, properties=[("p", messages[-1])])])
    root = ET.fromstring(doc.split("?>", 1)[1])
    assert root.tag == "testsuite" and len(root.findall("testcase")) == len(messages)
    assert "\x1b" not in doc


@settings(max_examples=200, deadline=None)
@given(texts)
def test_data_makes_json_and_csv_clean(text: str) -> None:
    value = textsafe.data({text: [text, {"k": text}, 3, None]})
    dumped = json.dumps(value, ensure_ascii=False)
    assert "\x1b" not in dumped and json.loads(dumped) == value
    buf = io.StringIO()
    csv.writer(buf).writerow([textsafe.clean(text)])
    assert next(csv.reader(io.StringIO(buf.getvalue())), [""]) in (
        [textsafe.clean(text)],
        [],  # csv reads an empty field on an empty line as no row
    )


def test_cap_says_how_much_is_left_out() -> None:
    assert textsafe.cap("abc", 5) == "abc"
    assert textsafe.cap("a" * 10, 4) == "aaaa... (6 more characters not shown)"
