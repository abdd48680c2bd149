"""Where the CLI prints: the two consoles, the step labels, and the lifecycle reporters.

A lab's lifecycle says which step it is in (`orchestrator.lab.Reporter`); the single-lab
commands show it as a spinner and a tick per step, the class commands as a progress bar
per student. Both read the step names from the one table here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from orchestrator import textsafe
from orchestrator.messages import N_, _, decimal, speaking

out = Console(highlight=False, emoji=False)  # `:name:` in a machine's output stays text
err = Console(stderr=True, highlight=False, emoji=False)


@dataclass(frozen=True)
class StepLabel:
    """How a lifecycle step is shown: `doing` on a bar while it runs, `done` with its tick.

    Both are marked for translation here and translated where they are shown."""

    doing: str
    done: str


#: the lifecycle's steps, `up`'s first and in its order
STEPS = {
    "image": StepLabel(N_("image"), N_("image ready")),
    "provision": StepLabel(N_("creating machines"), N_("machines created")),
    "setup": StepLabel(N_("starting state"), N_("starting state applied")),
    "clone": StepLabel(N_("cloning"), N_("clones taken")),
    "snapshot": StepLabel(N_("saving start"), N_("starting state saved (for reset)")),
    "restore": StepLabel(N_("restoring"), N_("machines restored")),
    "reboot": StepLabel(N_("rebooting"), N_("machines rebooted")),
}
UP_STEPS = ("image", "provision", "setup", "clone", "snapshot")


def done_label(name: str) -> str:
    step = STEPS.get(name)
    return _(step.done) if step else name


def doing_label(name: str) -> str:
    step = STEPS.get(name)
    return _(step.doing) if step else name


def shorten(text: str, width: int) -> str:
    """`text` cut to fewer than `width` characters, with `...` where it was cut."""
    return text if len(text) < width else text[: width - 3] + "..."


class ConsoleReporter:
    """Shows each lifecycle step with a spinner, then a tick and its duration."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Any = None
        self._label = ""

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._label = done_label(name)
        started = time.monotonic()
        with self.console.status(f"{self._label}...") as status:
            self._status = status
            try:
                yield
            except BaseException:
                self.console.print(f"[red]✗[/] {self._label}")
                raise
            finally:
                self._status = None
        self.console.print(
            f"[green]✓[/] {self._label} [dim]({decimal(time.monotonic() - started)} s)[/]"
        )

    def line(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"{self._label}: {textsafe.markup(text)}")
        else:
            self.console.print(f"[dim]{textsafe.markup(text)}[/]")


class ProgressBars:
    """One rich progress bar per student; lifecycle steps move it forward.

    rich's Progress takes a lock around every update, so worker threads report directly.
    """

    def __init__(self, progress: Any, students: list[str], total: int) -> None:
        self.progress = progress
        self.total = total
        self.tasks = {
            s: progress.add_task(escape(s), total=total, detail=_("waiting"), start=False)
            for s in students
        }

    def reporter(self, student: str) -> BarReporter:
        return BarReporter(self.progress, self.tasks[student])

    def finished(self, student: str, ok: bool, detail: str) -> None:
        task = self.tasks[student]
        shown = textsafe.markup(shorten(detail, 70))
        failed = _("failed:")
        self.progress.start_task(task)
        self.progress.update(
            task,
            completed=self.total,
            detail=f"[green]{shown}[/]" if ok else f"[red]{failed} {shown}[/]",
        )
        self.progress.stop_task(task)


class BarReporter:
    """A Reporter that moves one student's bar a step forward per lifecycle step."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.progress.start_task(self.task)
        self.progress.update(self.task, detail=doing_label(name))
        yield
        self.progress.advance(self.task)

    def line(self, text: str) -> None:
        self.progress.update(self.task, detail=textsafe.markup(shorten(text, 60)))


@contextlib.contextmanager
def bars(students: list[str], total: int, console: Console) -> Iterator[ProgressBars]:
    """Progress bars for `students`, `total` steps each, shown while the block runs."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        # a class larger than the screen: the summary table says it all afterwards
        transient=len(students) > 40 or not console.is_terminal,
    )
    with progress:
        yield ProgressBars(progress, students, total)


def laid_out_later(build: Callable[[], Any]) -> Callable[[], Any]:
    """What `build` returns, laid out for `out` in a thread started now; call the result
    to get it (built here instead if the thread failed).

    `up` prints the scenario's instructions at its end: markdown-it's import and parse and
    rich's layout are 0.1-0.3 s of a pool claim that mostly waits for the engine, so they
    are done during that wait. Only the layout runs there; the printing stays in order.
    """
    import threading

    from rich.segment import Segments

    done: list[Any] = []

    def work() -> None:
        with contextlib.suppress(Exception):  # whatever went wrong happens again below
            done.append(Segments(list(out.render(build()))))

    # in the caller's language: the view's headings and labels are translated
    thread = threading.Thread(target=speaking(work), name="layout", daemon=True)
    thread.start()

    def result() -> Any:
        thread.join()
        return done[0] if done else build()

    return result
