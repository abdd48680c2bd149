"""The five check forms: what each runs in the machines, and how it judges the results.

`probes` and `judge` are pure functions of a check and of exec results, so every form is
tested without an engine; `grade` runs the probes of many checks concurrently.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator import textsafe
from orchestrator.backends.base import OUTPUT_LIMIT, ExecResult, Executor, LabRef
from orchestrator.errors import GuestlabError
from orchestrator.scenario.model import Check, Task

#: the most of one stream of one probe that grading keeps; a probe printing more is stopped
#: there (in its machine) and its check fails: what a machine prints is untrusted
PROBE_OUTPUT_LIMIT = 64 * 1024
STDERR_LIMIT = 8 * 1024  # only ever shown as a short tail
#: the largest file a `file` check reads (its first line, mode and owner, fits beside it)
MAX_FILE_BYTES = PROBE_OUTPUT_LIMIT - 1024
MISSING, NOT_REGULAR, TOO_BIG = 3, 4, 5
T = TypeVar("T")
# positional parameters keep paths and unit names out of the shell text; only a regular
# file is read (a FIFO could block or never end), and only when its size is within bounds
FILE_PROBE = (
    'if [ -e "$1" ] || [ -L "$1" ]; then stat -c "%a %U" -- "$1" || exit 1; '
    f'if [ ! -f "$1" ]; then stat -L -c %F -- "$1" 2>/dev/null; exit {NOT_REGULAR}; fi; '
    's=$(stat -L -c %s -- "$1") || exit 1; '
    f'if [ "$s" -gt {MAX_FILE_BYTES} ]; then echo "$s"; exit {TOO_BIG}; fi; '
    # one byte more than a check reads: a file growing, or one whose size says 0 (/proc)
    f'exec head -c {MAX_FILE_BYTES + 1} -- "$1"; else exit {MISSING}; fi'
)
SERVICE_PROBE = 'systemctl is-active -- "$1"; systemctl is-enabled -- "$1"; exit 0'
#: the longest message a check result keeps
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Probe:
    machine: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Unreachable:
    """A probe that could not run at all (machine gone, engine error)."""

    message: str


Outcome = ExecResult | Unreachable


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message}


@dataclass
class TaskResult:
    task: Task
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.task.id,
            "title": self.task.title,
            "passed": self.passed,
            "points": self.task.points if self.passed else 0,
            "max_points": self.task.points,
            "checks": [c.as_dict() for c in self.checks],
        }


def sh(text: str, *args: str) -> tuple[str, ...]:
    return ("sh", "-c", text, "sh", *args)


def probes(check: Check) -> list[Probe]:
    """The commands a check needs, in the order `judge` expects their results."""
    if check.run is not None:
        return [Probe(check.machine or "", sh(check.run))]
    if check.file is not None:
        return [Probe(check.machine or "", sh(FILE_PROBE, check.file.path))]
    if check.service is not None:
        return [Probe(check.machine or "", sh(SERVICE_PROBE, check.service.name))]
    multi = check.distinct or check.equal
    assert multi is not None
    return [Probe(m, sh(multi.run)) for m in multi.machines]


def _problem(check: Check, probe: Probe, outcome: Outcome) -> str | None:
    if isinstance(outcome, Unreachable):
        return f"could not run on {probe.machine}: {outcome.message}"
    if outcome.timed_out:
        return f"timed out after {check.timeout:g} s on {probe.machine}"
    if outcome.truncated:
        return (
            f"printed more than {PROBE_OUTPUT_LIMIT // 1024} KiB on {probe.machine}, so it was"
            " stopped and not judged"
        )
    return None


def _tail(text: str, limit: int = 200) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= limit else "..." + text[-limit:]


def judge(check: Check, outcomes: Sequence[Outcome]) -> CheckResult:
    """Pass or fail one check from the results of its probes."""
    plan = probes(check)
    for probe, outcome in zip(plan, outcomes, strict=True):
        problem = _problem(check, probe, outcome)
        if problem:
            return _failed(check, problem)
    results = [o for o in outcomes if isinstance(o, ExecResult)]
    failure = _judge(check, results)
    if failure is None:
        return CheckResult(check.title, True)
    return _failed(check, check.fail_message or failure)


def _failed(check: Check, message: str) -> CheckResult:
    """A failed result; its message quotes what a machine printed, so it is made clean."""
    return CheckResult(check.title, False, textsafe.cap(textsafe.clean(message), MAX_MESSAGE))


def _judge(check: Check, results: list[ExecResult]) -> str | None:
    """None when the check passes, else why not."""
    if check.run is not None:
        return _judge_run(check, results[0])
    if check.file is not None:
        return _judge_file(check, results[0])
    if check.service is not None:
        return _judge_service(check, results[0])
    multi = check.distinct or check.equal
    assert multi is not None
    for machine, res in zip(multi.machines, results, strict=True):
        if res.exit_code != 0:
            return f"`{multi.run}` failed on {machine} (exit {res.exit_code}): {_tail(res.stderr)}"
    outputs = {m: r.stdout.strip() for m, r in zip(multi.machines, results, strict=True)}
    if check.distinct is not None:
        seen: dict[str, str] = {}
        for machine, out in outputs.items():
            if out in seen:
                return f"{seen[out]} and {machine} give the same output: {_tail(out, 80)}"
            seen[out] = machine
        return None
    if len(set(outputs.values())) > 1:
        shown = "; ".join(f"{m}: {_tail(o, 60)}" for m, o in outputs.items())
        return f"the outputs differ ({shown})"
    return None


def _judge_run(check: Check, res: ExecResult) -> str | None:
    expected = check.exit_code if check.exit_code is not None else 0
    if res.exit_code != expected:
        detail = _tail(res.stderr) or _tail(res.stdout)
        return f"exit code {res.exit_code}, expected {expected}" + (f": {detail}" if detail else "")
    if check.stdout is None:
        return None
    out = res.stdout.strip()
    cond = check.stdout
    if cond.equals is not None and out != cond.equals.strip():
        return f"output is {_tail(out, 80)!r}, expected {cond.equals.strip()!r}"
    if cond.contains is not None and cond.contains not in out:
        return f"output does not contain {cond.contains!r}"
    if cond.matches is not None and not re.search(cond.matches, out):
        return f"output {_tail(out, 80)!r} does not match /{cond.matches}/"
    return None


def _judge_file(check: Check, res: ExecResult) -> str | None:
    cond = check.file
    assert cond is not None
    exists = res.exit_code != MISSING
    if not cond.exists:
        return f"{cond.path} exists" if exists else None
    if not exists:
        return f"{cond.path} does not exist"
    if res.exit_code not in (0, NOT_REGULAR, TOO_BIG):
        return f"cannot read {cond.path}: {_tail(res.stderr)}"
    head, _, content = res.stdout.partition("\n")
    mode_text, _, owner = head.partition(" ")
    try:
        mode = int(mode_text, 8)
    except ValueError:  # not what stat prints: the machine's tools are not to be trusted
        return f"cannot read the mode of {cond.path}: {_tail(head, 40)!r}"
    if cond.mode is not None and mode != int(cond.mode, 8):
        return f"{cond.path} has mode {mode:04o}, expected {int(cond.mode, 8):04o}"
    if cond.owner is not None and owner != cond.owner:
        return f"{cond.path} is owned by {owner}, expected {cond.owner}"
    reads = cond.contains is not None or cond.matches is not None
    if reads and res.exit_code == NOT_REGULAR:
        kind = _tail(content, 40) or "not a regular file"
        return f"{cond.path} is not a regular file ({kind}), so it was not read"
    if reads and res.exit_code == TOO_BIG:
        size = _tail(content, 20)
        return f"{cond.path} is {size} bytes, more than the {MAX_FILE_BYTES} a check reads"
    if reads and len(content.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        return f"{cond.path} is more than {MAX_FILE_BYTES} bytes, more than a check reads"
    if cond.contains is not None and cond.contains not in content:
        return f"{cond.path} does not contain {cond.contains!r}"
    if cond.matches is not None and not re.search(cond.matches, content):
        return f"{cond.path} does not match /{cond.matches}/"
    return None


def _judge_service(check: Check, res: ExecResult) -> str | None:
    cond = check.service
    assert cond is not None
    lines = [*res.stdout.split("\n"), "", ""]
    active, enabled = lines[0].strip(), lines[1].strip()
    if cond.active is not None and (active == "active") != cond.active:
        want = "active" if cond.active else "not active"
        return f"{cond.name} is {active or 'unknown'}, expected {want}"
    if cond.enabled is not None and (enabled in ("enabled", "enabled-runtime")) != cond.enabled:
        want = "enabled" if cond.enabled else "not enabled"
        return f"{cond.name} is {enabled or 'unknown'}, expected {want}"
    return None


def _execute(runner: Executor, lab: LabRef, probe: Probe, timeout: float) -> Outcome:
    try:
        return bounded(runner.exec(lab, probe.machine, probe.argv, timeout=timeout))
    except GuestlabError as e:  # a machine that is gone fails its checks, it is no crash
        return Unreachable(str(e))


# The probes of one machine run as one exec: an exec costs the engine far more than the
# probes themselves (about 40 ms of dockerd's CPU each, measured), and a class's check runs
# thousands. Each probe still gets its own process, timeout and empty stdin, side by side;
# its streams are cut at PROBE_OUTPUT_LIMIT and STDERR_LIMIT in the machine (a probe that
# prints more is stopped by SIGPIPE), and come back in base64, a framing no probe's output
# can break. The host trusts none of it: it cuts again, and a batch's whole output is
# bounded by the backend's OUTPUT_LIMIT, which BATCH_SIZE probes always fit.
BATCH_MARK = "guestlab-probe"
BATCH_NEEDS = "command -v timeout && command -v base64 && command -v mktemp && command -v head"
NOT_BATCHED = 125  # the machine cannot run a batch (no /tmp room, missing tools): one by one
BATCH_ROOM_KIB = 4 * 1024  # each probe keeps at most 72 KiB, several run at once


def _b64_len(n: int) -> int:
    return 4 * -(-n // 3)


#: probes per exec, so that their framed lines never reach the backend's OUTPUT_LIMIT
BATCH_SIZE = OUTPUT_LIMIT // (
    _b64_len(PROBE_OUTPUT_LIMIT + 1) + _b64_len(STDERR_LIMIT + 1) + len(BATCH_MARK) + 32
)


def batch_script(items: Sequence[tuple[tuple[str, ...], float]]) -> str:
    """One shell script running every (argv, timeout) and printing one framed line each."""
    lines = [
        f"{{ {BATCH_NEEDS}; }} >/dev/null 2>&1 || exit {NOT_BATCHED}",
        f"d=$(mktemp -d 2>/dev/null) || exit {NOT_BATCHED}",
        "trap 'rm -rf \"$d\"' EXIT",
        # outputs cut short by a full disk would be judged as if whole: refuse instead
        f'set -- $(df -Pk "$d" | tail -n 1); [ "${{4:-0}}" -ge {BATCH_ROOM_KIB} ] '
        f"|| exit {NOT_BATCHED}",
    ]
    for i, (argv, timeout) in enumerate(items):
        cmd = shlex.join(["timeout", "--kill-after=2", f"{max(timeout, 0.1):g}", *argv])
        # stdout to the outer pipe (fd 3), stderr to the inner one; each through `head -c`
        lines.append(
            f'( {{ {{ {cmd} </dev/null; echo $? >"$d/{i}c"; }} 2>&1 1>&3 3>&- '
            f'| head -c {STDERR_LIMIT + 1} >"$d/{i}e" 3>&-; }} 3>&1 '
            f'| head -c {PROBE_OUTPUT_LIMIT + 1} >"$d/{i}o" ) &'
        )
    lines.append("wait")
    lines.append(
        f"for i in {' '.join(str(i) for i in range(len(items)))}; do "
        f'printf "{BATCH_MARK} %s %s %s- %s-\\n" "$i" "$(cat "$d/${{i}}c")" '
        '"$(base64 -w0 <"$d/${i}o")" "$(base64 -w0 <"$d/${i}e")"; done'
    )
    return "\n".join(lines)


def bounded(res: ExecResult) -> ExecResult:
    """`res` with its streams cut at the probe limits (truncated when stdout was)."""
    if len(res.stdout) <= PROBE_OUTPUT_LIMIT and len(res.stderr) <= STDERR_LIMIT:
        return res
    over = res.truncated or len(res.stdout) > PROBE_OUTPUT_LIMIT
    return ExecResult(
        res.exit_code,
        res.stdout[:PROBE_OUTPUT_LIMIT],
        res.stderr[:STDERR_LIMIT],
        timed_out=res.timed_out,
        truncated=over,
    )


def parse_batch(text: str, count: int) -> dict[int, ExecResult]:
    """The results a batch printed, by index; a line that does not parse is left out."""
    out: dict[int, ExecResult] = {}
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 5 or parts[0] != BATCH_MARK:
            continue
        try:
            i, code = int(parts[1]), int(parts[2])
            stdout = base64.b64decode(parts[3][:-1], validate=True)
            stderr = base64.b64decode(parts[4][:-1], validate=True)
        except (ValueError, binascii.Error):
            continue
        if 0 <= i < count:
            over = len(stdout) > PROBE_OUTPUT_LIMIT
            text_out, text_err = (
                b.decode("utf-8", "replace")
                for b in (stdout[:PROBE_OUTPUT_LIMIT], stderr[:STDERR_LIMIT])
            )
            out[i] = ExecResult(code, text_out, text_err, timed_out=code == 124, truncated=over)
    return out


def _execute_batch(
    runner: Executor, lab: LabRef, machine: str, items: Sequence[tuple[Probe, float]]
) -> list[Outcome]:
    """Every probe of one machine in one exec; the ones a batch could not give, one by one."""
    script = batch_script([(p.argv, t) for p, t in items])
    limit = max(t for _p, t in items) + 5  # the probes' own timeouts end them before this
    try:
        res = runner.exec(lab, machine, sh(script), timeout=limit)
    except GuestlabError as e:
        return [Unreachable(str(e))] * len(items)
    got = parse_batch(res.stdout, len(items))
    outcomes: list[Outcome] = []
    for i, (probe, timeout) in enumerate(items):
        if i in got:
            outcomes.append(got[i])
        elif res.timed_out:
            outcomes.append(ExecResult(124, "", "", timed_out=True))
        elif res.truncated:  # the batch printed more than it can: this machine is not honest
            outcomes.append(ExecResult(1, "", "", truncated=True))
        else:  # no shell, no room in /tmp, ...: the probe alone may still tell something
            outcomes.append(_execute(runner, lab, probe, timeout))
    return outcomes


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[n : n + size] for n in range(0, len(items), size)]


def grade(
    runner: Executor, lab: LabRef, tasks: Sequence[Task], *, workers: int = 16
) -> list[TaskResult]:
    """Run every check of `tasks`, one batch per machine, all machines at once; judge them."""
    planned = [(task, check, probes(check)) for task in tasks for check in task.checks]
    by_machine: dict[str, list[tuple[Probe, float]]] = {}
    for _task, check, plan in planned:
        for p in plan:
            by_machine.setdefault(p.machine, []).append((p, check.timeout))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            m: [
                pool.submit(_execute_batch, runner, lab, m, chunk)
                for chunk in _chunks(items, BATCH_SIZE)
            ]
            for m, items in by_machine.items()
        }
        outcomes = {m: iter([o for f in fs for o in f.result()]) for m, fs in futures.items()}
    results: dict[str, TaskResult] = {t.id: TaskResult(t) for t in tasks}
    for task, check, plan in planned:
        results[task.id].checks.append(judge(check, [next(outcomes[p.machine]) for p in plan]))
    return list(results.values())


def report(
    scenario: str, student: str, backend: str, results: Sequence[TaskResult]
) -> dict[str, Any]:
    """The JSON-able report of one check run."""
    tasks = [r.as_dict() for r in results]
    return {
        "scenario": scenario,
        "student": student,
        "backend": backend,
        "checked_at": time.time(),
        "score": sum(t["points"] for t in tasks),
        "max_score": sum(t["max_points"] for t in tasks),
        "passed": all(t["passed"] for t in tasks),
        "tasks": tasks,
    }
