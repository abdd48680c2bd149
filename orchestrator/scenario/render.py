"""Per-student values and template rendering (Jinja2, sandboxed, strict)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from orchestrator import paths
from orchestrator.errors import Problem, ScenarioError, StateError, UsageError
from orchestrator.messages import _
from orchestrator.scenario.model import Parameter, Scenario
from orchestrator.scenario.model_base import dump, parse

MARKERS = ("{{", "{%")
MAX_REPEAT = 10_000  # longest string or list a template may build with `*`
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


class RenderError(UsageError):
    """A template could not be rendered; the message says why, for the author."""


def has_template(text: str) -> bool:
    """Whether `text` needs rendering at all."""
    return any(marker in text for marker in MARKERS)


# --- per-student parameters -------------------------------------------------------------

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


# --- templates --------------------------------------------------------------------------


class _Vars:
    """The names a template reads as `label.NAME`; no methods for a template to reach."""

    __slots__ = ("_label", "_values")

    def __init__(self, label: str, values: Mapping[str, str]) -> None:
        self._label = label
        self._values = values


class _Environment(SandboxedEnvironment):
    """The sandbox, plus clear errors for unknown names and no memory-eating operators."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A plain dict would answer `params.items` with its method, not the parameter.
        if isinstance(obj, _Vars):
            return self._lookup(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, _Vars):
            return self._lookup(obj, argument)
        return super().getitem(obj, argument)

    def _lookup(self, obj: _Vars, name: Any) -> Any:
        if isinstance(name, str) and name in obj._values:
            return obj._values[name]
        known, said = ", ".join(sorted(obj._values)), f"{obj._label}.{name}"
        if not known:
            return self.undefined(hint=_("`{name}` is not defined (known: none)").format(name=said))
        hint = _("`{name}` is not defined (known: {known})").format(name=said, known=known)
        return self.undefined(hint=hint)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError(_("the ** operator is not allowed in scenario templates"))
        for seq, times in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
            if sized and len(seq) * times > MAX_REPEAT:
                said = _("a template may not build more than {count} items")
                raise SecurityError(said.format(count=MAX_REPEAT))
        return super().call_binop(context, operator, left, right)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=2048)
def _compile(text: str) -> Template:
    # Cached: every student of a class renders the same strings.
    return _ENV.from_string(text)


MachineFacts = Mapping[str, Mapping[str, str]]
"""machine name -> {backend, kind, virt, os}: what the lab knows of each machine."""


def render_text(
    text: str, params: Mapping[str, str], student: str, machines: MachineFacts | None = None
) -> str:
    """Render one string; raise RenderError saying what is wrong with the template."""
    if not has_template(text):
        return text  # also keeps regexes such as `[0-9a-f]{32}` intact
    facts = {n: _Vars(f"machines.{n}", dict(f)) for n, f in (machines or {}).items()}
    try:
        template = _compile(text)
        return template.render(
            params=_Vars("params", params),
            student=_Vars("student", {"id": student}),
            machines=_Vars("machines", facts),
        )
    except TemplateSyntaxError as e:
        where = f" (template line {e.lineno})" if "\n" in text.rstrip("\n") else ""
        raise RenderError(
            _("template syntax error: {message}{where}").format(message=e.message, where=where)
        ) from None
    except SecurityError as e:
        raise RenderError(_("template not allowed: {error}").format(error=e)) from None
    except UndefinedError as e:
        raise RenderError(_("template: {message}").format(message=_undefined(str(e)))) from None
    except TemplateError as e:
        raise RenderError(_("template error: {error}").format(error=e)) from None
    except Exception as e:
        # Whatever fails inside an author's template is a problem of the scenario, not a crash.
        raise RenderError(
            _("template failed: {name}: {error}").format(name=type(e).__name__, error=e)
        ) from None


#: how Jinja2 says that a template names a variable nobody gave it
_UNDEFINED = re.compile(r"""^(['"])(?P<name>.*)\1 is undefined$""")


def _undefined(message: str) -> str:
    """Jinja2's "'x' is undefined" said with what a template can use; our own hint (a name
    under params, student or machines) as it is."""
    found = _UNDEFINED.match(message)
    if found is None:
        return message
    return _(
        "'{name}' is undefined (templates can use params.NAME, student.id and machines.NAME.FACT)"
    ).format(name=found["name"])


def render_scenario(
    scenario: Scenario,
    params: dict[str, str],
    student: str,
    machines: MachineFacts | None = None,
) -> Scenario:
    """A copy of `scenario` with every string rendered for `student`, validated again."""
    file = f"<{scenario.id}>"
    problems: list[Problem] = []

    def walk(value: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):
            try:
                return render_text(value, params, student, machines)
            except RenderError as e:
                problems.append(Problem(file, 0, 0, _dotted(loc), str(e)))
                return value
        if isinstance(value, dict):
            return {k: walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    data = walk(dump(scenario), ())
    if problems:
        raise ScenarioError(problems)
    try:
        return parse(Scenario, data)
    except ValidationError as e:
        from orchestrator.scenario.explain import message  # imports render: here, not above

        said = _("after rendering: {problem}")
        raise ScenarioError(
            [
                Problem(file, 0, 0, _dotted(loc), said.format(problem=message(err, loc)))
                for err in e.errors(include_url=False)
                for loc in [tuple(err["loc"])]
            ]
        ) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)
