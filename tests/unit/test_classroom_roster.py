"""Rosters: every problem reported with its line, nothing accepted until all are fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import messages
from orchestrator.classroom.roster import RosterError, load, parse


def problems(text: str) -> list[str]:
    with pytest.raises(RosterError) as exc:
        parse(text, "class.csv")
    return exc.value.problems


def test_a_good_roster_gives_students_in_order() -> None:
    students = parse("id,name,email\nalice,Alice Martin,alice@example.org\nbob,Bob,\n")
    assert [(s.id, s.name, s.email, s.line) for s in students] == [
        ("alice", "Alice Martin", "alice@example.org", 2),
        ("bob", "Bob", "", 3),
    ]


def test_columns_may_come_in_any_order_and_blank_lines_are_skipped() -> None:
    students = parse("email,ID,name\n\na@example.org,a1,Ann\n\n")
    assert [(s.id, s.name, s.line) for s in students] == [("a1", "Ann", 3)]


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    text = (
        "id,name,email\n"
        "alice,Alice,alice@example.org\n"  # 2 ok
        "bob,,bob@example.org\n"  # 3 empty name
        "carol,Carol,not-an-email\n"  # 4 bad e-mail
        "-dave,Dave,\n"  # 5 bad id
        "erin,Erin,erin@example.org,extra\n"  # 6 field count
        "alice,Alice again,\n"  # 7 duplicate
        "ALICE,Alice shouting,\n"  # 8 same lab as alice
        "a b,Space,\n"  # 9 bad id
    )
    got = problems(text)
    assert [p.split(":")[1] for p in got] == ["3", "4", "5", "6", "7", "8", "9"]
    assert all(p.startswith("class.csv:") for p in got)
    assert "the name is empty" in got[0]
    assert "'not-an-email' is not an e-mail address" in got[1]
    assert "student id '-dave'" in got[2]
    assert "4 field(s), expected 3" in got[3]
    assert "already on line 2" in got[4]
    assert "already on line 2 as 'alice', which names the same lab" in got[5]


def test_a_roster_s_problems_are_said_in_the_reader_s_language() -> None:
    with messages.language("pt-BR"), pytest.raises(RosterError) as exc:
        parse("id,name,email\nalice,,x\n-bob,Bob,\n", "turma.csv")
    assert exc.value.problems == [
        "turma.csv:2: o nome está vazio",
        "turma.csv:2: 'x' não é um endereço de e-mail",
        "turma.csv:3: o id de aluno '-bob' deve ter de 1 a 40 letras, dígitos, '.', '_' ou '-',"
        " começando por letra ou dígito",
    ]
    assert str(exc.value).startswith("turma.csv: 3 problemas na lista de alunos")


def test_the_header_is_required() -> None:
    assert problems("alice,Alice,alice@example.org\n") == [
        "class.csv:1: the header must be `id,name,email` and may add `ssh_key`, `lxd_target`"
        " (missing column(s) id, name, email;"
        " unknown column(s) 'alice', 'alice', 'alice@example.org'; column(s) given twice: alice)"
    ]
    assert "missing column(s) email" in problems("id,name\nalice,Alice\n")[0]
    assert "empty roster" in problems("\n\n")[0]
    assert "no student" in problems("id,name,email\n")[0]


def test_a_quoted_field_over_two_lines_is_located_where_its_row_starts() -> None:
    got = problems('id,name,email\n"x y","Two\nlines",\nok,Fine,\n')
    assert got[0].startswith("class.csv:2: student id 'x y'")


def test_files_are_read_as_utf8_with_or_without_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "class.csv"
    path.write_bytes("\ufeffid,name,email\nzoe,Zoé Ü,\n".encode())
    assert load(path)[0].name == "Zoé Ü"
    path.write_bytes(b"id,name,email\nzoe,Zo\xe9,\n")
    with pytest.raises(RosterError) as exc:
        load(path)
    assert exc.value.problems == [f"{path}:2: not UTF-8 text"]


def test_a_missing_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot read the roster"):
        load(tmp_path / "nope.csv")
