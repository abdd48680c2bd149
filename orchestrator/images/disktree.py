"""The manifest of an ext2/3/4 file system in a disk image, read by debugfs, never mounted.

A box may be one an instructor imported: its file system is read in user space (as
diskcheck.py reads it), not handed to the host kernel. Directories are walked level by
level, one debugfs run per level, by inode number (`ls -p <INO>`): a name from the disk is
only ever a key of the manifest, never part of a host path or of a debugfs command.
Wanted files are dumped by inode into a scratch directory of ours and hashed there;
symlink targets come from `stat` (fast links) or a dump (longer ones).
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.images.manifest import Manifest, sha256_of, sorted_manifest, wanted

ROOT_INODE = 2
#: `ls -p`: /inode/mode/uid/gid/name/size/ (a directory's size is empty)
_ENTRY = re.compile(r"^/(\d+)/([0-7]+)/\d+/\d+/(.*)/(\d*)/$")
_FAST_LINK = re.compile(r'^Fast link dest: "(.*)"$', re.S)
#: at most this many bytes of dumped files in the scratch directory at once
DUMP_BYTES = 256 * 1024**2
#: a disk whose wanted files claim more (sparse files can claim terabytes) gets no
#: manifest: reading them would take the host's time, not tell a binary from another
MAX_TOTAL = 8 * 1024**3
LINK_MAX = 4096  # the kernel resolves no longer symlink
TIMEOUT = 600.0
S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000


class DiskUnreadable(Exception):
    """debugfs could not read what the manifest needs: no manifest, with the reason."""


@dataclass(frozen=True)
class Entry:
    path: str
    inode: int
    size: int


def debugfs(device: str, commands: Sequence[str], cwd: Path) -> list[str]:
    """The output of each of `commands`, run read-only in one debugfs over `device`."""
    script = cwd / "commands"
    script.write_text("".join(c + "\n" for c in commands))
    try:
        res = subprocess.run(
            ["debugfs", "-f", str(script), device],
            capture_output=True,
            cwd=cwd,
            timeout=TIMEOUT,
            env={**os.environ, "DEBUGFS_PAGER": "__none__", "PAGER": "__none__"},
            check=False,
        )
    except FileNotFoundError:
        raise DiskUnreadable("debugfs (e2fsprogs) is not installed") from None
    except subprocess.TimeoutExpired:
        raise DiskUnreadable(f"debugfs took more than {TIMEOUT:g} s") from None
    text = res.stdout.decode("utf-8", "surrogateescape")
    # debugfs echoes each command of a script as "debugfs: CMD" before its output
    sections = re.split(r"^debugfs: (.*)\n", text, flags=re.M)
    echoed, outputs = sections[1::2], sections[2::2]
    if res.returncode != 0 or echoed != list(commands):
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no answer"]
        raise DiskUnreadable(f"debugfs could not read the disk ({why[0]})")
    return outputs


def from_ext4(device: str, scratch: Path) -> Manifest:
    """The manifest of the file system on `device` (a file, or `FILE?offset=N`)."""
    out = Manifest()
    files: list[Entry] = []
    links: list[Entry] = []
    level = [Entry("/", ROOT_INODE, 0)]
    listed = {ROOT_INODE}  # a crafted directory entry may point back at an ancestor
    while level:
        listings = debugfs(device, [f"ls -p <{d.inode}>" for d in level], scratch)
        below: list[Entry] = []
        for folder, listing in zip(level, listings, strict=True):
            if not re.search(rf"^/{folder.inode}/04[0-7]+/\d+/\d+/\./", listing, re.M):
                # every directory lists itself as `.`: a file system debugfs could not
                # open, or a broken directory, would otherwise read as an empty one
                raise DiskUnreadable(f"debugfs could not list {folder.path} on the disk")
            for line in listing.splitlines():
                found = _ENTRY.match(line)
                if not found or "/" in found[3] or found[3] in ("", ".", ".."):
                    continue  # a name no kernel would accept is no path of the machine
                entry = Entry(
                    posixpath.join(folder.path, found[3]), int(found[1]), int(found[4] or 0)
                )
                kind = int(found[2], 8) & S_IFMT
                if kind == S_IFDIR and entry.inode not in listed:
                    listed.add(entry.inode)
                    below.append(entry)
                elif kind == S_IFLNK and entry.size <= LINK_MAX:
                    links.append(entry)
                elif kind == S_IFREG and wanted(entry.path):
                    files.append(entry)
        level = below
    if sum(f.size for f in files) > MAX_TOTAL:
        raise DiskUnreadable(f"the disk's binaries claim more than {MAX_TOTAL >> 30} GiB")
    out.links.update(_link_targets(device, links, scratch))
    out.files.update(_hashes(device, files, scratch))
    return sorted_manifest(out)


def _link_targets(device: str, links: list[Entry], scratch: Path) -> dict[str, str]:
    """path -> target of each symlink: `stat` shows a fast link's, a dump a longer one's."""
    targets: dict[str, str] = {}
    slow: list[Entry] = []
    shown = debugfs(device, [f"stat <{x.inode}>" for x in links], scratch) if links else []
    for link, text in zip(links, shown, strict=True):
        fast = next((m[1] for x in text.split("\n") if (m := _FAST_LINK.match(x))), None)
        if fast is not None and len(os.fsencode(fast)) == link.size:
            targets[link.path] = fast
        else:
            slow.append(link)
    for link, dumped in _dumped(device, slow, scratch):
        targets[link.path] = os.fsdecode(dumped.read_bytes())
    return targets


def _hashes(device: str, files: list[Entry], scratch: Path) -> dict[str, str]:
    """path -> SHA-256 of each regular file, a hard-linked inode dumped once."""
    by_inode: dict[int, Entry] = {}
    for entry in files:
        by_inode.setdefault(entry.inode, entry)
    digests: dict[int, str] = {}
    for entry, dumped in _dumped(device, list(by_inode.values()), scratch):
        with dumped.open("rb") as f:
            digests[entry.inode] = sha256_of(f)
    return {entry.path: digests[entry.inode] for entry in files}


def _dumped(device: str, entries: list[Entry], scratch: Path) -> Iterator[tuple[Entry, Path]]:
    """Each entry with the file it was dumped to by inode, in batches of at most DUMP_BYTES
    (a batch's files are removed once the next is asked for)."""
    start = 0
    while start < len(entries):
        end, total = start, 0
        while end < len(entries) and (end == start or total + entries[end].size <= DUMP_BYTES):
            total += entries[end].size
            end += 1
        batch = entries[start:end]
        # names of ours, relative to debugfs's working directory: nothing to quote
        with tempfile.TemporaryDirectory(dir=scratch, prefix="dump") as folder:
            names = [f"{Path(folder).name}/{i}" for i in range(len(batch))]
            debugfs(
                device,
                [f"dump <{e.inode}> {n}" for e, n in zip(batch, names, strict=True)],
                scratch,
            )
            for entry, name in zip(batch, names, strict=True):
                dumped = scratch / name
                if not dumped.is_file() or dumped.stat().st_size != entry.size:
                    raise DiskUnreadable(f"debugfs could not read {entry.path} whole")
                yield entry, dumped
        start = end
