"""guestlab's own strings in the reader's language, through the stdlib's gettext.

The texts are in `orchestrator/locale/<ll_CC>/LC_MESSAGES/guestlab.po` (extracted with
`pybabel extract -F babel.cfg`, see docs/i18n.md). A `.mo` is build output: the set-up
script compiles one beside each `.po`; where there is none, or it is older than its
`.po` (an edited checkout, a wheel), the `.po` is compiled once into the cache with Babel,
which is imported only then. English needs no file at all.

The language is a context variable: the CLI sets it once per command (`use`), the web
server per request (`language`), so two students' pages never mix. A worker thread starts
in a context of its own, in English: work handed to one goes through `speaking`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gettext
import hashlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import ParamSpec, TypeVar

DOMAIN = "guestlab"
LOCALE = Path(__file__).resolve().parent / "locale"
ENGLISH = "en"

_language: ContextVar[str] = ContextVar("guestlab_language", default=ENGLISH)

P = ParamSpec("P")
R = TypeVar("R")


def available() -> list[str]:
    """English and every language with a catalog, as tags (`pt-BR`)."""
    found = (p.parent.parent.name for p in LOCALE.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return [ENGLISH, *sorted(name.replace("_", "-") for name in found)]


def use(lang: str) -> None:
    """Speak `lang` from now on in this context (the CLI's whole command)."""
    _language.set(lang)


def current() -> str:
    return _language.get()


@contextlib.contextmanager
def language(lang: str) -> Iterator[None]:
    """Speak `lang` inside the block only (one web request)."""
    token = _language.set(lang)
    try:
        yield
    finally:
        _language.reset(token)


def speaking(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, to run in another thread in the caller's language (its context as it is now):
    `pool.submit(speaking(fn), ...)`, `pool.map(speaking(fn), ...)`."""
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # a copy per call: the threads of a pool.map would otherwise enter one context at
        # once, which Context.run refuses
        return context.copy().run(fn, *args, **kwargs)

    return run


def _(message: str) -> str:
    """`message` in the current language; itself where it is not translated."""
    return translations(_language.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_language.get()).ngettext(singular, plural, n)


#: languages that write a decimal comma (3,5 s)
DECIMAL_COMMA = frozenset({"pt-BR"})


def decimal(value: float, places: int = 1) -> str:
    """`value` with `places` decimals, as the current language writes a number."""
    text = f"{value:.{places}f}"
    return text.replace(".", ",") if _language.get() in DECIMAL_COMMA else text


def did_you_mean(given: str, known: list[str], listing: str) -> str:
    """A hint: the closest of `known` to `given`, else `listing` (translated, with
    `{names}`) listing them all."""
    import difflib

    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    if close:
        return _("did you mean {name}?").format(name=close[0])
    return listing.format(names=", ".join(known))


def N_(message: str) -> str:
    """Mark a text for extraction where it is defined; `_` translates it where shown."""
    return message


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of `lang` (a tag: `pt-BR`); an empty one for English or an unknown tag."""
    po = LOCALE / lang.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == ENGLISH or not po.is_file():
        return gettext.NullTranslations()
    with compiled(po).open("rb") as f:
        return gettext.GNUTranslations(f)


def compiled(po: Path) -> Path:
    """A `.mo` that matches `po`: the one beside it if fresh, else one in the cache."""
    beside = po.with_suffix(".mo")
    if beside.is_file() and beside.stat().st_mtime >= po.stat().st_mtime:
        return beside
    digest = hashlib.sha256(po.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"{po.parent.parent.name}-{digest}.mo"
    if not cached.is_file():
        compile_po(po, cached)
    return cached


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/guestlab/locale: shared by every state store of this user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "guestlab" / "locale"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def compile_po(po: Path, target: Path) -> None:
    """Compile `po` to `target` (fuzzy entries left out), atomically: two commands may race."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with partial.open("wb") as f:
        write_mo(f, catalog)
    partial.replace(target)
