"""What `guestlab list` shows of each scenario, kept in a cache keyed by file content.

Validating a scenario needs the YAML reader, pydantic and Jinja2 (a quarter of a second of
imports); a listing of files that have not changed needs none of them. An entry is used
only when the file's SHA-256, the language, guestlab's version and the hash of the
format's modules (`cache.schema_hash`) all match; an invalid file is never cached, so its
problems are reported every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from orchestrator import __version__, paths
from orchestrator.errors import ScenarioError
from orchestrator.messages import ngettext
from orchestrator.scenario.cache import schema_hash

Summary = dict[str, Any]
CACHE = "catalog.json"


def summarize(path: Path, lang: str) -> Summary:
    """Load and check the file (raising ScenarioError), and keep what a listing shows."""
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file

    sc = localize(load_file(path), lang)
    meta = sc.metadata
    return {
        "id": sc.id,
        "title": meta.title,
        "level": meta.level,
        "objective": meta.objective,
        "duration": meta.duration,
        "backends": list(sc.backends),
        "tasks": len(sc.tasks),
        "max_score": sc.max_score,
    }


def summaries(files: list[Path], lang: str) -> list[tuple[str, Summary | None, str]]:
    """(file, summary or None when invalid, what is wrong) for each file, in order."""
    cache_file = paths.home() / "cache" / CACHE
    cache = _read(cache_file)
    rows: list[tuple[str, Summary | None, str]] = []
    changed = False
    schema = schema_hash()
    for path in files:
        key = f"{path}\0{lang}\0{__version__}\0{schema}"
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digest = ""
        hit = cache.get(key)
        if digest and isinstance(hit, dict) and hit.get("sha") == digest:
            rows.append((str(path), hit["summary"], ""))
            continue
        try:
            summary = summarize(path, lang)
        except ScenarioError as e:
            n = len(e.problems)
            said = ngettext(
                "{n} problem; guestlab validate {path}", "{n} problems; guestlab validate {path}", n
            )
            rows.append((str(path), None, said.format(n=n, path=path)))
            continue
        rows.append((str(path), summary, ""))
        cache[key] = {"sha": digest, "summary": summary}
        changed = True
    if changed:
        _write(cache_file, cache)
    return rows


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all (a temporary file renamed); a cache that cannot be written is
    only slower next time."""
    with contextlib.suppress(OSError):
        paths.ensure(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
