"""Which machine binaries a check runs, and whether they are still the image's.

A check's shell is a trusted busybox whose own applets (`cat`, `test`, `sha256sum`, ...)
never touch the machine's files; any other word may run a machine binary. The words are
taken conservatively (every word that could name a command, not only the first of each
pipeline), each is looked up in every directory of the check's PATH, and the trusted shell
hashes what is there. The host compares the hashes with the image's manifest: the file the
shell would run must be the image's, and nothing may sit before it in PATH.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.images.manifest import Manifest
from orchestrator.messages import _

#: the check shell's PATH: the image's directories first, so that a shim in /usr/local
#: never shadows an image binary; /usr/local last, for tools a scenario installs there
SAFE_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")
PRELOAD = "/etc/ld.so.preload"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,127}$")
_PATH = re.compile(r"^/[A-Za-z0-9_.+:@/-]{1,255}$")
_OPERATORS = re.compile(r"[|;&()<>`{}!$]")
_QUOTES = re.compile(r"[\"'\\]")
#: shell words that are no command of the machine: keywords and the shell's own builtins
_KEYWORDS = frozenset(
    {
        *("if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until"),
        *("case", "esac", "function", "select", "time", "exit", "exec", "set", "unset"),
        *("cd", "read", "trap", "wait", "export", "local", "return", "shift", "type"),
        *("command", "eval", "break", "continue", "readonly", "umask", "alias", "hash"),
    }
)


def command_words(text: str, applets: frozenset[str]) -> list[str]:
    """Every word of shell `text` that may name a machine binary (a name not a busybox
    applet nor a shell keyword, or an absolute path), in first-seen order."""
    # quotes and backslashes dropped, not honoured: `"$(cmd)"` is a command, not a string;
    # comments kept: a `#` inside quotes would otherwise hide the rest of a line
    tokens = _QUOTES.sub(" ", _OPERATORS.sub(" ", text)).split()
    seen: dict[str, None] = {}
    for token in tokens:
        for word in token.split("="):  # `VAR=value cmd` and `x=$(cmd)` both hide a command
            word = word.strip("\"'")
            if _PATH.match(word) or (
                _NAME.match(word) and word not in applets and word not in _KEYWORDS
            ):
                seen.setdefault(word, None)
    return list(seen)


def candidates(words: Iterable[str], manifest: Manifest | None = None) -> list[str]:
    """The machine paths the trusted shell hashes for `words` (an absolute path only when
    it is an image binary: `/root/answer` is data, and may be a FIFO)."""
    out: dict[str, None] = {}
    for word in words:
        if word.startswith("/"):
            if manifest is not None and manifest.expected(word) is not None:
                out.setdefault(word, None)
        else:
            for folder in SAFE_PATH:
                out.setdefault(f"{folder}/{word}", None)
    return list(out)


def integrity_script(libraries: Sequence[str]) -> str:
    """A busybox shell script: whether ld.so.preload is in use, then `sha256sum` lines of
    each path given as an argument that exists, then of the image's loader and libc."""
    libs = " ".join(shlex.quote(p) for p in libraries)
    return (
        f'if [ -s {PRELOAD} ] || [ -L {PRELOAD} ]; then echo "preload"; fi; '
        'for p in "$@" ' + libs + '; do if [ -f "$p" ]; then '
        'sha256sum "$p" 2>/dev/null || echo "unreadable  $p"; '
        # a FIFO or a device in place of a binary is never read, only reported
        'elif [ -e "$p" ] || [ -L "$p" ]; then echo "notafile  $p"; fi; done; exit 0'
    )


@dataclass(frozen=True)
class Seen:
    """What the trusted shell found in a machine: preload in use, path -> hash."""

    preload: bool
    hashes: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Seen:
        hashes: dict[str, str] = {}
        preload = False
        for line in text.splitlines():
            if line == "preload":
                preload = True
                continue
            digest, sep, path = line.partition("  ")
            if sep:
                hashes[path] = digest
        return cls(preload, hashes)


def tampered(words: Sequence[str], seen: Seen, manifest: Manifest) -> str | None:
    """Why running `words` in this machine cannot be trusted, or None."""
    if not words:
        return None
    if seen.preload:
        return _("tampered: {preload} is in use, so every machine binary loads it").format(
            preload=PRELOAD
        )
    for lib in manifest.libraries:
        problem = _differs(lib, seen, manifest)
        if problem:
            return problem
    for word in words:
        problem = _word_problem(word, seen, manifest)
        if problem:
            return problem
    return None


def _word_problem(word: str, seen: Seen, manifest: Manifest) -> str | None:
    """The first file the shell would run for `word` must be the image's own."""
    if word.startswith("/"):
        return _differs(word, seen, manifest) if word in seen.hashes else None
    image_has = [p for p in candidates([word]) if manifest.expected(p) is not None]
    for path in candidates([word]):
        if path not in seen.hashes:
            continue
        if manifest.expected(path) is None:
            if image_has:  # a new file that comes before the image's binary in PATH
                return _("tampered: {path} shadows {original} from the image").format(
                    path=path, original=image_has[0]
                )
            return None  # not an image binary at all (a scenario's own tool)
        return _differs(path, seen, manifest)
    return None


def _differs(path: str, seen: Seen, manifest: Manifest) -> str | None:
    want = manifest.expected(path)
    got = seen.hashes.get(path)
    if want is None or got is None:  # not the image's, or not in the machine: nothing to run
        return None
    if got != want:
        return _("tampered: {path} differs from the image").format(path=path)
    return None
