"""Running probes: the probes of one machine in one exec, each bounded, each judged alone.

An exec costs the engine far more than the probes themselves (about 40 ms of dockerd's CPU
each, measured), and a class's check runs thousands. Each probe still gets its own
process, timeout and empty stdin, side by side; its streams are cut at PROBE_OUTPUT_LIMIT
and STDERR_LIMIT in the machine (a probe that prints more is stopped by SIGPIPE), and come
back in base64, a framing no probe's output can break. The host trusts none of it: it cuts
again, and a batch's whole output is bounded by the backend's OUTPUT_LIMIT, which
BATCH_SIZE probes always fit.
"""

from __future__ import annotations

import base64
import binascii
import math
import shlex
from collections.abc import Sequence

from orchestrator.backends.contract import OUTPUT_LIMIT, ExecResult, Executor, LabRef
from orchestrator.checks.form import (
    PROBE_OUTPUT_LIMIT,
    STDERR_LIMIT,
    Outcome,
    Probe,
    Unreachable,
    sh,
)
from orchestrator.errors import GuestlabError, MemberUnreachable

BATCH_MARK = "guestlab-probe"
BATCH_NEEDS = "command -v timeout && command -v base64 && command -v mktemp && command -v head"
NOT_BATCHED = 125  # the machine cannot run a batch (no /tmp room, missing tools): one by one
BATCH_ROOM_KIB = 4 * 1024  # each probe keeps at most 72 KiB, several run at once
#: seconds between a probe's TERM at its timeout and its KILL
KILL_AFTER = 2
#: run by `setsid` for each probe of the trusted shell: write the session id, run argv
SESSION = 'echo $$ >"$0"; exec "$@"'


def _b64_len(n: int) -> int:
    return 4 * -(-n // 3)


#: probes per exec, so that their framed lines never reach the backend's OUTPUT_LIMIT
BATCH_SIZE = OUTPUT_LIMIT // (
    _b64_len(PROBE_OUTPUT_LIMIT + 1) + _b64_len(STDERR_LIMIT + 1) + len(BATCH_MARK) + 32
)


def batch_script(items: Sequence[tuple[tuple[str, ...], float]], *, tool_dir: str = "") -> str:
    """One shell script running every (argv, timeout) and printing one framed line each.

    With `tool_dir` it runs in the trusted busybox shell, which removes the tool's directory
    when it ends. Busybox's `timeout` ends only the probe's own process: what that started
    (`lxc` in `lxc ... | grep`) would keep the probe's pipes open, and the whole batch
    waiting. So each probe runs in a session of its own, which a watchdog kills when the
    probe outlives its timeout: one stuck probe times out alone.
    """
    gone = f' "{tool_dir}"' if tool_dir else ""
    lines = [
        f"{{ {BATCH_NEEDS}; }} >/dev/null 2>&1 || exit {NOT_BATCHED}",
        f"d=$(mktemp -d 2>/dev/null) || exit {NOT_BATCHED}",
        f"trap 'rm -rf \"$d\"{gone}' EXIT",
        # outputs cut short by a full disk would be judged as if whole: refuse instead
        f'set -- $(df -Pk "$d" | tail -n 1); [ "${{4:-0}}" -ge {BATCH_ROOM_KIB} ] '
        f"|| exit {NOT_BATCHED}",
        "jobs=",
    ]
    if tool_dir:  # the watchdog's wake-up, made before any probe starts
        lines.append(f'mkfifo "$d/f" || exit {NOT_BATCHED}')
    for i, (argv, timeout) in enumerate(items):
        if tool_dir:
            # the session's id (its first process) goes to a file, for the watchdog
            cmd = f'setsid sh -c {shlex.quote(SESSION)} "$d/{i}p" ' + shlex.join(
                ["timeout", "-k", str(KILL_AFTER), f"{max(timeout, 0.1):g}", *argv]
            )
        else:  # GNU's timeout signals the probe's whole process group itself
            cmd = shlex.join(
                ["timeout", f"--kill-after={KILL_AFTER}", f"{max(timeout, 0.1):g}", *argv]
            )
        # stdout to the outer pipe (fd 3), stderr to the inner one; each through `head -c`
        lines.append(
            f'( {{ {{ {cmd} </dev/null; echo $? >"$d/{i}c"; }} 2>&1 1>&3 3>&- '
            f'| head -c {STDERR_LIMIT + 1} >"$d/{i}e" 3>&-; }} 3>&1 '
            f'| head -c {PROBE_OUTPUT_LIMIT + 1} >"$d/{i}o"; : >"$d/{i}d" ) &'
        )
        lines.append('jobs="$jobs $!"')
    every = " ".join(str(i) for i in range(len(items)))
    if tool_dir:
        lines.append(_watchdog(every, max(t for _a, t in items)))
    lines.append("wait $jobs")
    if tool_dir:
        lines.append('echo >&4; wait "$watchdog"')
    lines.append(
        f"for i in {every}; do "
        f'printf "{BATCH_MARK} %s %s %s- %s-\\n" "$i" "$(cat "$d/${{i}}c")" '
        '"$(base64 -w0 <"$d/${i}o")" "$(base64 -w0 <"$d/${i}e")"; done'
    )
    return "\n".join(lines)


def _watchdog(every: str, longest: float) -> str:
    """A subshell that, once the longest probe's time and its kill are over, kills the
    session of each probe still running. It waits on a FIFO the batch writes to when its
    probes are done, so it starts no process of its own and the batch reaps it: nothing of
    the batch is left in the machine (a test counts the processes after a reboot)."""
    wait = math.ceil(max(longest, 0.1) + KILL_AFTER + 1)
    return (
        'exec 4<>"$d/f"\n'
        f"( read -t {wait} x <&4 && exit 0; "
        f'for i in {every}; do [ -e "$d/${{i}}d" ] || [ ! -s "$d/${{i}}p" ] || '
        'kill -9 -"$(cat "$d/${i}p")"; done ) </dev/null >/dev/null 2>&1 &\n'
        "watchdog=$!"
    )


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


#: exit codes that mean a probe's timeout ended it: GNU's, and busybox's (whose `timeout`
#: kills its command, which then ends by SIGTERM or SIGKILL)
TIMED_OUT = frozenset({124})
TIMED_OUT_BUSYBOX = frozenset({124, 128 + 15, 128 + 9})


def parse_batch(
    text: str, count: int, timed_out: frozenset[int] = TIMED_OUT
) -> dict[int, ExecResult]:
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
            out[i] = ExecResult(
                code, text_out, text_err, timed_out=code in timed_out, truncated=over
            )
    return out


def execute(runner: Executor, lab: LabRef, probe: Probe, timeout: float) -> Outcome:
    """One probe in an exec of its own."""
    try:
        return bounded(runner.exec(lab, probe.machine, probe.argv, timeout=timeout))
    except MemberUnreachable:
        raise  # the lab is out of reach, not wrong: no grade at all
    except GuestlabError as e:  # a machine that is gone fails its checks, it is no crash
        return Unreachable(str(e))


def execute_batch(
    runner: Executor,
    lab: LabRef,
    machine: str,
    items: Sequence[tuple[Probe, float]],
    *,
    tool_dir: str = "",
) -> list[Outcome]:
    """Every probe of one machine in one exec; the ones a batch could not give, one by one.
    `tool_dir`: `runner` is the trusted busybox shell staged there (trusted.py)."""
    script = batch_script([(p.argv, t) for p, t in items], tool_dir=tool_dir)
    # the probes' own timeouts (and the trusted shell's watchdog) end them before this
    limit = max(t for _p, t in items) + KILL_AFTER + 6
    try:
        res = runner.exec(lab, machine, sh(script), timeout=limit)
    except MemberUnreachable:
        raise  # the lab is out of reach, not wrong: no grade at all
    except GuestlabError as e:
        return [Unreachable(str(e))] * len(items)
    got = parse_batch(res.stdout, len(items), TIMED_OUT_BUSYBOX if tool_dir else TIMED_OUT)
    outcomes: list[Outcome] = []
    for i, (probe, timeout) in enumerate(items):
        if i in got:
            outcomes.append(got[i])
        elif res.timed_out:
            outcomes.append(ExecResult(124, "", "", timed_out=True))
        elif res.truncated:  # the batch printed more than it can: this machine is not honest
            outcomes.append(ExecResult(1, "", "", truncated=True))
        else:  # no shell, no room in /tmp, ...: the probe alone may still tell something
            outcomes.append(execute(runner, lab, probe, timeout))
    return outcomes
