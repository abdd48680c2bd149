"""Where scenarios are found: by path, or by id along a search path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.messages import _, did_you_mean

SUFFIXES = (".yaml", ".yml")
#: the environment variables of the search path, in order; the second is the older name
ENV_VARS = ("GUESTLAB_PATH", "GUESTLAB_SCENARIOS")


@dataclass(frozen=True)
class Folder:
    """A folder on the search path and what put it there."""

    path: Path
    source: str


def library_dir() -> Path:
    """The library shipped inside the package: scenarios/ and labs/ as package data.

    Found beside the package's own files, not through importlib.resources, which imports
    tempfile, shutil and the compression modules on every command (guestlab is installed
    as files, never run from a zip)."""
    import orchestrator.library

    return Path(orchestrator.library.__file__).parent


def user_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "guestlab" / "scenarios"


def search_folders() -> list[Folder]:
    """Where ids are looked up, first match wins: `--path` and $GUESTLAB_PATH (the CLI puts
    `--path` first in it), $GUESTLAB_SCENARIOS (its older name), ./scenarios, the user's
    ~/.config/guestlab/scenarios, then the bundled library. A folder listed twice counts once.
    """
    folders = [
        Folder(Path(part), name)
        for name in ENV_VARS
        for part in os.environ.get(name, "").split(os.pathsep)
        if part
    ]
    folders += [
        Folder(Path.cwd() / "scenarios", "./scenarios"),
        Folder(user_dir(), "user"),
        Folder(library_dir() / "scenarios", "library"),
    ]
    unique: list[Folder] = []
    seen: set[Path] = set()
    for folder in folders:
        key = folder.path.resolve()
        if key not in seen and (folder.source == "library" or folder.path.is_dir()):
            seen.add(key)
            unique.append(folder)
    return unique


def search_path() -> list[Path]:
    return [f.path for f in search_folders()]


def _is_path(ref: str) -> bool:
    return ref.endswith(SUFFIXES) or "/" in ref or os.sep in ref


def resolve(ref: str) -> Path:
    """The scenario file `ref` names: a path to a .yaml/.yml file, or a scenario id."""
    if _is_path(ref):
        path = Path(ref)
        if not path.exists():
            raise UsageError(_("no such scenario file: {file}").format(file=ref))
        if not path.is_file() or path.suffix not in SUFFIXES:
            raise UsageError(
                _("not a scenario file (a .yaml or .yml file): {file}").format(file=ref)
            )
        return path
    dirs = search_path()
    for folder in dirs:
        for suffix in SUFFIXES:
            candidate = folder / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(d) for d in dirs)
    known = sorted({p.stem for folder in dirs if folder.is_dir() for p in _files_in(folder)})
    raise UsageError(
        _("unknown scenario `{id}` (searched: {folders})").format(id=ref, folders=searched),
        hint=did_you_mean(
            ref,
            known,
            _("`guestlab list` shows the scenarios available; `guestlab --path DIR` adds a folder"),
        ),
    )


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def discover() -> list[Path]:
    """Every scenario file on the search path; of two with the same id, the first wins."""
    return [paths[0] for _id, paths in sorted(_by_id().items())]


def shadowed() -> dict[Path, list[Path]]:
    """The files that lose to one of the same id earlier on the path, by the winning file."""
    return {paths[0]: paths[1:] for paths in _by_id().values() if len(paths) > 1}


def _by_id() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for folder in search_path():
        if folder.is_dir():
            for path in _files_in(folder):
                found.setdefault(path.stem, []).append(path)
    return found


def expand(paths: list[str]) -> list[Path]:
    """The files `guestlab validate PATH...` checks: folders give their .yaml/.yml files."""
    out: list[Path] = []
    for ref in paths:
        path = Path(ref)
        if path.is_dir():
            files = _files_in(path)
            if not files:
                raise UsageError(_("no scenario files (*.yaml, *.yml) in {ref}").format(ref=ref))
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
