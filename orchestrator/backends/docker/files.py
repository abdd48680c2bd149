"""Files of a machine through Docker's archive API: read and staged with no machine binary.

The engine resolves every path inside the container's root (a student's symlink cannot
lead out), says what the path is in a header before any byte of it is sent, and streams
a tar of it; the host reads no more of that stream than a check reads, then closes it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import posixpath
import secrets
import tarfile
import time
from typing import IO, Any
from urllib.parse import quote

from orchestrator.backends.contract import FileProbe
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

STAT_HEADER = "X-Docker-Container-Path-Stat"
#: Go's os.FileMode type bits, as the stat header gives them
_GO_KINDS = ((1 << 31, "directory"), (1 << 27, "symlink"), (1 << 25, "fifo"), (1 << 24, "socket"))
_GO_DEVICE, _GO_CHAR = 1 << 26, 1 << 21
#: room for the tar headers (PAX records included) before a file's first byte
HEADER_ROOM = 64 * 1024
READ_TIMEOUT = 30
#: what an archive the engine sends may raise when it is not what it says
TarError = tarfile.TarError


class Bounded(io.RawIOBase):
    """A stream that ends after `limit` bytes of `raw`, whatever `raw` would still give."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw, self.left = raw, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.left <= 0:
            return 0
        data = self.raw.read(min(len(buf), self.left))
        self.left -= len(data)
        buf[: len(data)] = data
        return len(data)


def go_kind(mode: int) -> str:
    for bit, kind in _GO_KINDS:
        if mode & bit:
            return kind
    if mode & _GO_DEVICE:
        return "char" if mode & _GO_CHAR else "block"
    return "regular"


def read_file(api: Any, container: str, path: str, limit: int) -> FileProbe:
    """`path` in `container` (a symlink not followed) and at most `limit` bytes of it."""
    url = f"{api.base_url}/v{api.api_version}/containers/{quote(container)}/archive"
    # identity: a gzipped stream would make the byte bound below a bound on compressed bytes
    headers = {"Accept-Encoding": "identity"}
    res = api.get(url, params={"path": path}, headers=headers, stream=True, timeout=READ_TIMEOUT)
    try:
        if res.status_code == 404:
            if "no such container" in res.text.lower():
                raise MachineUnavailable(
                    _("machine {container} does not exist").format(container=container)
                )
            return FileProbe("absent")
        if res.status_code != 200:
            raise ProvisioningError(
                _("reading {path} in {container}: {text}").format(
                    path=path, container=container, text=res.text.strip()[:200]
                )
            )
        try:
            stat = json.loads(base64.b64decode(res.headers[STAT_HEADER]))
        except (KeyError, ValueError, binascii.Error):
            raise ProvisioningError(
                _("reading {path}: the engine sent no file status").format(path=path)
            ) from None
        kind, size = go_kind(int(stat.get("mode", 0))), int(stat.get("size", 0))
        want = limit if kind == "regular" and size <= limit else 0
        with tarfile.open(fileobj=Bounded(res.raw, HEADER_ROOM + want), mode="r|") as tar:
            member = tar.next()
            if member is None:
                raise ProvisioningError(
                    _("reading {path}: the engine sent an empty archive").format(path=path)
                )
            data = b""
            if want and member.isreg():
                f = tar.extractfile(member)
                data = f.read(want) if f is not None else b""
        target = str(stat.get("linkTarget", "")) if kind == "symlink" else ""
        return FileProbe(kind, member.mode & 0o7777, member.uid, size, data, target)
    finally:
        res.close()


def uid_base(userns: bool, data_root: str) -> int:
    """The host uid of the machines' root: a remapped engine keeps its data in
    `<root>/<uid>.<gid>`, and the archive API gives owners as the host sees them."""
    if not userns:
        return 0
    first = posixpath.basename(data_root.rstrip("/")).split(".")[0]
    return int(first) if first.isdigit() else 0


def shifted(probe: FileProbe, base: int) -> FileProbe:
    """`probe` with its owner as the machine numbers it (65534 when the machine maps none)."""
    if not base:
        return probe
    uid = probe.uid - base if base <= probe.uid < base + 65536 else 65534
    return dataclasses.replace(probe, uid=uid)


def file_archive(name: str, data: bytes, mode: int) -> bytes:
    """A tar of the one file `name`, with `mode`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tool_archive(name: str, data: bytes) -> tuple[str, bytes]:
    """A tar of a fresh directory holding the executable `name`; the directory's name."""
    folder = f".guestlab-{secrets.token_hex(8)}"
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo(folder)
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o700, now
        tar.addfile(d)
        f = tarfile.TarInfo(f"{folder}/{name}")
        f.size, f.mode, f.mtime = len(data), 0o700, now
        tar.addfile(f, io.BytesIO(data))
    return folder, buf.getvalue()
