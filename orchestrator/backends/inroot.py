"""Reading and writing a machine's tree from the host without ever leaving its root.

`openat2(2)` with RESOLVE_IN_ROOT resolves every path, symlinks and `..` included, as if
the directory it starts from were `/`: a student's link to `/etc/shadow` or to `../../..`
lands inside the machine. RESOLVE_NO_MAGICLINKS refuses `/proc/PID/root`-style links,
which would jump to another root. Python has no binding for it: this is a typed wrapper
over the raw syscall (Linux 5.6 and later), and what the host reads with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import posixpath
import secrets
import stat
from dataclasses import dataclass

from orchestrator.backends.contract import FileProbe
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

SYS_OPENAT2 = 437  # the same number on every architecture (it came after the unification)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

_KINDS = {
    stat.S_IFREG: "regular",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}


class OpenHow(ctypes.Structure):
    """`struct open_how` of linux/openat2.h."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """A file descriptor for `path` from `dirfd`, resolved under `resolve`; OSError else."""
    how = OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(
        SYS_OPENAT2,
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"openat2 {path}: {os.strerror(err)}")
    return int(fd)


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "unknown")


@dataclass(frozen=True)
class Root:
    """A machine's root directory, open; `uid_base` maps host owners to the machine's."""

    fd: int
    uid_base: int = 0

    def close(self) -> None:
        os.close(self.fd)

    def parent(self, path: str) -> tuple[int, str]:
        """An O_PATH descriptor of the directory holding `path`, and the last name in it."""
        norm = posixpath.normpath("/" + path.lstrip("/"))
        folder, name = posixpath.split(norm)
        if name in ("", ".", ".."):  # the root itself
            return openat2(self.fd, "/", os.O_PATH | os.O_DIRECTORY, IN_ROOT), "."
        return openat2(self.fd, folder, os.O_PATH | os.O_DIRECTORY, IN_ROOT), name


def probe(root: Root, path: str, limit: int) -> FileProbe:
    """`path` in the machine (not followed if a symlink) and at most `limit` of its bytes."""
    try:
        dirfd, name = root.parent(path)
    except FileNotFoundError:
        return FileProbe("absent")
    except NotADirectoryError:
        return FileProbe("absent")
    try:
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return FileProbe("absent")
        kind = kind_of(st.st_mode)
        owner = st.st_uid - root.uid_base if st.st_uid >= root.uid_base else 65534
        base = FileProbe(kind, stat.S_IMODE(st.st_mode), owner, st.st_size)
        if kind == "symlink":
            return FileProbe(kind, base.mode, owner, st.st_size, target=_readlink(name, dirfd))
        if kind != "regular" or limit <= 0:
            return base
        return FileProbe(kind, base.mode, owner, st.st_size, data=_read(dirfd, name, limit))
    finally:
        os.close(dirfd)


def _readlink(name: str, dirfd: int) -> str:
    return os.readlink(name, dir_fd=dirfd)


def _read(dirfd: int, name: str, limit: int) -> bytes:
    """At most `limit` bytes of the regular file `name`: never a FIFO or device put there
    since it was looked at (O_NONBLOCK opens a FIFO without waiting, fstat refuses it)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    fd = openat2(dirfd, name, flags, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{name} stopped being a regular file")
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def stage(root: Root, name: str, data: bytes) -> str:
    """Write `data` as an executable in a fresh directory at the machine's `/`; its path.

    The host owns both (a uid the machine does not map), so root in the machine may run the
    tool but neither change nor remove it.
    """
    folder = f".guestlab-{secrets.token_hex(8)}"
    os.mkdir(folder, 0o755, dir_fd=root.fd)
    dirfd = openat2(root.fd, folder, os.O_PATH | os.O_DIRECTORY, IN_ROOT | RESOLVE_NO_SYMLINKS)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(name, flags, 0o755, dir_fd=dirfd)
        try:
            os.write(fd, data)
            os.fchmod(fd, 0o755)
        finally:
            os.close(fd)
    finally:
        os.close(dirfd)
    return f"/{folder}/{name}"


def unstage(root: Root, path: str) -> None:
    """Remove a tool `stage` wrote and its directory; what is already gone is fine."""
    folder, name = posixpath.split(path)
    if not posixpath.basename(folder).startswith(".guestlab-"):
        return
    try:
        dirfd = openat2(root.fd, folder, os.O_PATH | os.O_DIRECTORY, IN_ROOT | RESOLVE_NO_SYMLINKS)
    except OSError:
        return
    try:
        os.unlink(name, dir_fd=dirfd)
    except OSError:
        pass
    finally:
        os.close(dirfd)
    with contextlib.suppress(OSError):
        os.rmdir(folder.lstrip("/"), dir_fd=root.fd)


def machine_root(pid: int) -> Root:
    """The root of the machine whose process is `pid`, as that process sees it (its mounts
    included), and the host uid its root maps to."""
    base = 0
    with open(f"/proc/{pid}/uid_map") as f:
        for line in f:
            inside, outside, _count = (int(x) for x in line.split())
            if inside == 0:
                base = outside
                break
    return Root(os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), base)


def read_in(pid: int, path: str, limit: int) -> FileProbe:
    """`probe` of `path` in the machine of process `pid`."""
    root = machine_root(pid)
    try:
        return probe(root, path, limit)
    finally:
        root.close()


def stage_in(pid: int, name: str, data: bytes) -> str:
    """`stage` a tool in the machine of process `pid`."""
    root = machine_root(pid)
    try:
        return stage(root, name, data)
    finally:
        root.close()


def unstage_in(pid: int, path: str) -> None:
    """`unstage` a tool from the machine of process `pid`."""
    try:
        root = machine_root(pid)
    except OSError:
        return
    try:
        unstage(root, path)
    finally:
        root.close()


def read_machine(pid: int, machine: str, path: str, limit: int) -> FileProbe:
    """`read_in`; what the host cannot open becomes MachineUnavailable naming `machine`."""
    try:
        return read_in(pid, path, limit)
    except OSError as e:
        raise MachineUnavailable(
            _("reading {path} in {machine}: {strerror}").format(
                path=path, machine=machine, strerror=e.strerror
            )
        ) from None


def stage_machine(pid: int, machine: str, name: str, data: bytes) -> str:
    """`stage_in`; what the host cannot write becomes a ProvisioningError naming `machine`."""
    try:
        return stage_in(pid, name, data)
    except OSError as e:
        raise ProvisioningError(
            _("copying {name} into {machine}: {strerror}").format(
                name=name, machine=machine, strerror=e.strerror
            )
        ) from None
