"""`show`'s text kept as it was printed, as `man` keeps its formatted pages: a second
`show` of an unchanged scenario on the same terminal prints it again without importing
rich's Markdown (markdown-it is a third of `show`'s start-up).

The key holds everything the text depends on: the scenario's own cache key (its bytes
and language), guestlab's version and format, the source of the views that draw it, the
message catalogs, rich's installed files, and the terminal (width, colours, encoding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import __version__
from orchestrator.scenario import cache

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

HERE = Path(__file__).parent


def _inputs(console: Console) -> list[str]:
    """What, beside the scenario, decides the text: code, catalogs, rich, the terminal."""
    import rich

    digest = hashlib.sha256((HERE / "views.py").read_bytes())
    for mo in sorted((HERE / "locale").glob("*/LC_MESSAGES/*.mo")):
        digest.update(mo.name.encode() + mo.read_bytes())
    markdown = Path(rich.__file__).with_name("markdown.py").stat()
    return [
        __version__,
        cache.schema_hash(),
        digest.hexdigest(),
        f"rich {rich.__file__} {markdown.st_mtime_ns} {markdown.st_size}",
        f"{console.width} {console.color_system} {console.is_terminal} {console.encoding}",
        f"{console.no_color} {console.legacy_windows}",
    ]


def print_kept(
    console: Console, scenario_key: Sequence[str], render: Callable[[], RenderableType]
) -> None:
    """Print what `render` draws on `console`, from the cache when it holds this key."""
    try:
        parts = ["shown", *_inputs(console), *scenario_key]
    except OSError:  # a source that cannot be read: nothing is kept
        console.print(render())
        return
    key = "\0".join(parts)
    file = cache.folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"
    entry = cache.read_entry(file)
    if entry is not None and entry.get("key") == key and isinstance(entry.get("text"), str):
        console.file.write(entry["text"])
        console.file.flush()
        return
    with console.capture() as captured:
        console.print(render())
    text = captured.get()
    cache.write_entry(file, {"key": key, "text": text})
    console.file.write(text)
    console.file.flush()
