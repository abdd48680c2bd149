"""guestlab's own strings: the catalog covers every one, and a pt-BR session shows none of
them in English (the CLI on an in-memory engine, the seat's pages)."""

from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from click.testing import CliRunner, Result

from orchestrator import backends, messages
from orchestrator.cli import cli, console
from tests.english import PLACEHOLDER, PO, english_in
from tests.unit.classroom_fakes import FakeBackend

ROOT = Path(__file__).resolve().parents[2]

POT = messages.LOCALE / "guestlab.pot"
LAB = "machine-id-clone"


@functools.cache
def extracted() -> frozenset[str]:
    """Every msgid in the sources and templates, as `pybabel extract -F babel.cfg` sees them."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = extract_from_dir(str(ROOT), method_map, options_map, keywords=keywords)
    return frozenset(msg if isinstance(msg, str) else msg[0] for _f, _l, msg, _c, _x in found)


def catalog(path: Path) -> Catalog:
    with path.open("rb") as f:
        return read_po(f)


def test_every_string_has_a_brazilian_portuguese_translation() -> None:
    po = catalog(PO)
    gaps = []
    for msgid in sorted(extracted()):
        entry = po.get(msgid)
        strings = [] if entry is None else entry.string
        strings = [strings] if isinstance(strings, str) else list(strings)
        if entry is None or entry.fuzzy or not strings or not all(strings):
            gaps.append(msgid)
    assert not gaps, f"{PO.name} lacks a translation of: {gaps} (docs/i18n.md says how)"


def test_the_catalog_keeps_no_obsolete_entry() -> None:
    po = catalog(PO)
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in po if m.id}
    assert not po.obsolete, sorted(po.obsolete)
    assert not ids - extracted(), sorted(ids - extracted())


def test_the_template_is_what_extraction_gives() -> None:
    pot = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog(POT) if m.id}
    assert pot == set(extracted()), sorted(pot ^ extracted())


def test_a_translation_keeps_every_placeholder() -> None:
    for entry in catalog(PO):
        if not entry.id:
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        wanted = set(PLACEHOLDER.findall(ids[-1])) | set(PLACEHOLDER.findall(ids[0]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= wanted, (ids[0], text)
            # `%(n)s` may stay out of a singular ("uma dica"), never out of both
        assert set(PLACEHOLDER.findall(strings[-1])) == set(PLACEHOLDER.findall(ids[-1])), ids


def test_a_missing_or_stale_mo_is_compiled_from_the_po_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locale = tmp_path / "locale" / "pt_BR" / "LC_MESSAGES"
    locale.mkdir(parents=True)
    shutil.copy(PO, locale / "guestlab.po")
    (locale / "guestlab.mo").write_bytes(b"stale")
    os.utime(locale / "guestlab.mo", (1, 1))  # older than its .po: not to be read
    monkeypatch.setattr(messages, "LOCALE", tmp_path / "locale")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    messages.translations.cache_clear()
    try:
        with messages.language("pt-BR"):
            assert messages._("Score: {score}/{max_score}") == "Pontuação: {score}/{max_score}"
    finally:
        messages.translations.cache_clear()
    assert len(list((tmp_path / "cache" / "guestlab" / "locale").glob("pt_BR-*.mo"))) == 1


@pytest.fixture
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    backend = FakeBackend()
    monkeypatch.setitem(backends._cache, "docker", backend)
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GUESTLAB_LANG", raising=False)
    # rich fixes a console's width when it is made if $COLUMNS is set then: `guestlab()`
    # sets it per command, and this puts the made one back afterwards
    monkeypatch.setattr(console.out, "_width", console.out._width)
    monkeypatch.setenv("LANG", "C.UTF-8")
    yield backend
    messages.use(messages.ENGLISH)  # the CLI sets the language of this thread


def guestlab(*args: str, columns: int = 100, **env: str) -> Result:
    console.out.width = columns
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": str(columns), **env})


def test_a_pt_br_session_shows_no_english_and_remembers_its_language(
    fake_engine: FakeBackend,
) -> None:
    up = guestlab("up", LAB, "-s", "ana", "--lang", "pt-BR")
    assert up.exit_code == 0, up.output
    # the language chosen at `up` goes on without --lang, even against $GUESTLAB_LANG
    later = [
        guestlab("check", LAB, "-s", "ana", GUESTLAB_LANG="en"),
        guestlab("hint", LAB, "unique-id", "-s", "ana"),
        guestlab("status", LAB, "-s", "ana"),
        guestlab("reset", LAB, "-s", "ana"),
        guestlab("exec", LAB, "clnoe", "-s", "ana", "--", "true"),
        guestlab("down", LAB, "-s", "ana"),
    ]
    assert [r.exit_code for r in later] == [1, 0, 0, 0, 1, 0], [r.output for r in later]
    shown = "\n".join(r.output + str(r.exception or "") for r in [up, *later])
    assert "Pontuação: 0/5" in shown and "Dica 1/4 para unique-id" in shown
    assert re.search(r"O laboratório está no ar em \d+,\d s\.", shown)  # a decimal comma
    assert "o laboratório machine-id-clone não tem a máquina clnoe" in shown
    assert english_in(shown) == []


def test_an_explicit_lang_wins_over_the_labs(fake_engine: FakeBackend) -> None:
    assert guestlab("up", LAB, "-s", "ana", "--lang", "pt-BR").exit_code == 0
    again = guestlab("up", LAB, "-s", "ana")  # up again keeps the lab's language
    assert "já está no ar para ana" in again.output, again.output
    check = guestlab("check", LAB, "-s", "ana", "--lang", "en")
    assert "Score: 0/5" in check.output and "Pontuação" not in check.output


def test_the_seat_page_in_pt_br_shows_no_english() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from orchestrator.web.rendering import page

    def seat(_request: object) -> object:
        task = {"id": "t", "title": "Tarefa", "points": 1, "earned": 0, "state": "fail"}
        task |= {"messages": [], "instructions_html": "", "hints_taken": 0}
        return page(
            "seat.html",
            lang="pt-BR",
            strings_json="{}",
            languages=["en", "pt-BR"],
            vendor_ok=False,
            **{"student": "ana", "title": "Laboratório", "description_html": ""},
            **{"machines": ["clone"], "score": 0, "max_score": 1, "tasks": [task]},
        )

    shown = TestClient(Starlette(routes=[Route("/", seat)])).get("/").text
    assert "Verificar" in shown and "Recomeçar" in shown
    visible = re.sub(r"<[^>]+>", " ", shown)
    assert english_in(visible) == []


def test_script_strings_are_translated() -> None:
    from orchestrator.web.i18n import script_strings

    english, portuguese = script_strings("en"), script_strings("pt-BR")
    assert english.keys() == portuguese.keys()
    assert all(english[k] != portuguese[k] for k in english)


def test_every_command_takes_lang() -> None:
    import click

    def commands(group: click.Group, path: str) -> Iterator[tuple[str, click.Command]]:
        for name in group.list_commands(click.Context(group)):
            command = group.get_command(click.Context(group), name)
            assert command is not None, name
            if isinstance(command, click.Group):
                yield from commands(command, f"{path} {name}")
            else:
                yield f"{path} {name}", command

    found = dict(commands(cli, "guestlab"))
    assert {"guestlab up", "guestlab class status", "guestlab serve", "guestlab list"} <= set(found)
    lacking = [name for name, c in found.items() if not any(p.name == "lang" for p in c.params)]
    assert lacking == []


def test_a_removed_resource_is_named_in_the_readers_language() -> None:
    from orchestrator import views

    with messages.language("pt-BR"):
        assert views.resource("network gl-lab") == "rede gl-lab"
        assert views.resource("image guestlab/lab:clone-start") == "imagem guestlab/lab:clone-start"
        assert views.resource("clone/start") == "clone/start"  # an LXD snapshot: no kind
    assert views.resource("network gl-lab") == "network gl-lab"


def _score() -> str:
    return messages._("Score: {score}/{max_score}")


def test_work_handed_to_a_worker_thread_speaks_the_callers_language() -> None:
    from concurrent.futures import ThreadPoolExecutor

    english, portuguese = "Score: {score}/{max_score}", "Pontuação: {score}/{max_score}"
    with messages.language("pt-BR"), ThreadPoolExecutor(max_workers=2) as pool:
        # a worker starts in a context of its own, which speaks English
        assert pool.submit(_score).result() == english
        assert pool.submit(messages.speaking(_score)).result() == portuguese
        # one wrapped function run by several threads at once: a context copy each
        said = pool.map(messages.speaking(lambda _n: _score()), range(8))
        assert list(said) == [portuguese] * 8
    assert _score() == english  # the caller's own language is left as it was


def test_a_lab_s_parallel_steps_and_a_class_s_students_speak_the_commands_language() -> None:
    from orchestrator.classroom.workers import Outcome, in_parallel
    from orchestrator.lab.bring_up import _parallel

    said: list[str] = []
    with messages.language("pt-BR"):
        _parallel(lambda _item: said.append(_score()), ["a", "b", "c"])
        outcomes = list(in_parallel(3, ["ana", "bia"], lambda s: Outcome(s, True, _score())))
    assert said == ["Pontuação: {score}/{max_score}"] * 3
    assert {o.detail for o in outcomes} == {"Pontuação: {score}/{max_score}"}
