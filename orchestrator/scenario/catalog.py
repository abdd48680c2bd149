"""Where scenarios are found: by path, or by id along a search path."""

from __future__ import annotations

import os
from pathlib import Path

import orchestrator
from orchestrator.errors import UsageError

SUFFIXES = (".yaml", ".yml")


def search_path() -> list[Path]:
    """$GUESTLAB_SCENARIOS (or ./scenarios when it exists), then the repository's own."""
    explicit = os.environ.get("GUESTLAB_SCENARIOS")
    if explicit:
        dirs = [Path(part) for part in explicit.split(os.pathsep) if part]
    else:
        here = Path.cwd() / "scenarios"
        dirs = [here] if here.is_dir() else []
    dirs.append(Path(orchestrator.__file__).resolve().parent.parent / "scenarios")
    unique: list[Path] = []
    seen: set[Path] = set()
    for folder in dirs:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def _is_path(ref: str) -> bool:
    return ref.endswith(SUFFIXES) or "/" in ref or os.sep in ref


def resolve(ref: str) -> Path:
    """The scenario file `ref` names: a path to a .yaml/.yml file, or a scenario id."""
    if _is_path(ref):
        path = Path(ref)
        if not path.exists():
            raise UsageError(f"no such scenario file: {ref}")
        if not path.is_file() or path.suffix not in SUFFIXES:
            raise UsageError(f"not a scenario file (a .yaml or .yml file): {ref}")
        return path
    dirs = search_path()
    for folder in dirs:
        for suffix in SUFFIXES:
            candidate = folder / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(d) for d in dirs)
    raise UsageError(
        f"unknown scenario `{ref}` (searched: {searched})",
        hint="`guestlab list` shows the scenarios available; set GUESTLAB_SCENARIOS to add folders",
    )


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def discover() -> list[Path]:
    """Every scenario file on the search path; of two with the same id, the first wins."""
    found: dict[str, Path] = {}
    for folder in search_path():
        if folder.is_dir():
            for path in _files_in(folder):
                found.setdefault(path.stem, path)
    return sorted(found.values(), key=lambda p: p.stem)


def expand(paths: list[str]) -> list[Path]:
    """The files `guestlab validate PATH...` checks: folders give their .yaml/.yml files."""
    out: list[Path] = []
    for ref in paths:
        path = Path(ref)
        if path.is_dir():
            files = _files_in(path)
            if not files:
                raise UsageError(f"no scenario files (*.yaml, *.yml) in {ref}")
            out.extend(files)
        elif path.is_file():
            out.append(path)  # any suffix: validating it says what is wrong
        else:
            out.append(resolve(ref))
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in out:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
