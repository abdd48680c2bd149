"""Per-student parameter values, and whether a text needs rendering at all.

What `up` needs of a scenario before its templates are rendered, apart from render.py so
that a lab opened from the scenario cache computes its values without importing Jinja2
or pydantic.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import paths
from orchestrator.errors import StateError
from orchestrator.messages import _

if TYPE_CHECKING:
    from orchestrator.scenario.model import Parameter, Scenario

MARKERS = ("{{", "{%")
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def has_template(text: str) -> bool:
    """Whether `text` needs rendering at all."""
    return any(marker in text for marker in MARKERS)


#: the secret behind every per-student value, in $GUESTLAB_HOME: without it a student who
#: knows a classmate's id cannot compute the classmate's values (and plant them)
KEY_FILE = "params.key"
KEY_BYTES = 32


def params_key(home: Path | None = None) -> bytes:
    """This host's parameter key, made the first time it is needed (mode 0600).

    Two processes making it at once end with the same key: each writes its own candidate
    to a private file and links it into place; a link never replaces an existing file, so
    the first one wins and the other reads the winner's.
    """
    path = (home or paths.home()) / KEY_FILE
    try:
        try:
            return _read_key(path)
        except FileNotFoundError:
            pass
        paths.ensure(path.parent)
        candidate = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(6)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass  # another process was first: its key is the key
        finally:
            os.unlink(candidate)
        return _read_key(path)
    except OSError as e:
        raise StateError(
            _("cannot read or make the parameter key {path}: {error}").format(
                path=path, error=e.strerror or e
            ),
            hint=_("GUESTLAB_HOME must be a directory this user can write"),
        ) from None


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO never blocks
    try:
        info = os.fstat(fd)
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode) or len(key) != KEY_BYTES:
        raise StateError(
            _("the parameter key {path} is damaged (not {key_bytes} bytes)").format(
                path=path, key_bytes=KEY_BYTES
            ),
            hint=_("restore it from a backup; a new key gives every new lab other values"),
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o600)  # a key others can read is no secret: close it again
    return key


def derive_params(scenario: Scenario, student: str, key: bytes | None = None) -> dict[str, str]:
    """Each parameter's value for `student`: the same every time, different per student,
    and unguessable without this host's key (`params_key`)."""
    secret = params_key() if key is None else key
    return {
        name: _derive(_stream(secret, scenario.id, student, name), spec)
        for name, spec in scenario.parameters.items()
    }


def _stream(key: bytes, *parts: str) -> Iterator[int]:
    """Bytes of HMAC-SHA256 in counter mode over the length-prefixed parts."""
    seed = b"guestlab-params-v2"
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        seed += len(raw).to_bytes(4, "big") + raw
    for counter in itertools.count():
        yield from hmac.new(key, seed + counter.to_bytes(8, "big"), hashlib.sha256).digest()


def _below(stream: Iterator[int], n: int) -> int:
    """A uniform integer in [0, n): rejection sampling avoids modulo bias."""
    span = 1 << 64
    limit = span - span % n
    while True:
        value = int.from_bytes(bytes(next(stream) for _ in range(8)), "big")
        if value < limit:
            return value % n


def _derive(stream: Iterator[int], spec: Parameter) -> str:
    if spec.choices is not None:
        return spec.choices[_below(stream, len(spec.choices))]
    if spec.random == "hex":
        alphabets = ["0123456789abcdef"] * spec.length
    elif spec.random == "digits":
        alphabets = ["0123456789"] * spec.length
    else:  # word: consonant-vowel pairs read aloud easily
        alphabets = [CONSONANTS if i % 2 == 0 else VOWELS for i in range(spec.length)]
    return "".join(alphabet[_below(stream, len(alphabet))] for alphabet in alphabets)
