"""The check forms: what each runs in the machines, and how it judges the results.

- `form`: what a form is (`Form`), a `Probe` and its `Outcome`, the bounds on what a probe
  may print, and the helpers every judgement shares.
- `run`, `file`, `service`, `compare` (`distinct` and `equal`), `kept`: a module per form.
- `registry`: each form registered once (`FORMS`); a check's `Plan` (its probes, computed
  once) and its judgement. A new form: its module and one entry in `registry.FORMS`.
- `batch`: the probes of one machine in one exec, bounded in the machine and on the host.
- `grading`: `grade`, many checks' probes run concurrently, a batch per machine;
  `run_before`, the probes that run before a reboot.
- what grading returns (`CheckResult`, `TaskResult`, `Report`) is `orchestrator.report`.

Probes and judgements are pure functions of a check and of exec results, so every form is
tested without an engine. This package's names below are the ones its callers import.
"""

from orchestrator.checks.batch import (
    BATCH_MARK,
    BATCH_NEEDS,
    BATCH_ROOM_KIB,
    BATCH_SIZE,
    NOT_BATCHED,
    batch_script,
    bounded,
    execute,
    execute_batch,
    parse_batch,
)
from orchestrator.checks.file import FILE_PROBE, MAX_FILE_BYTES, MISSING, NOT_REGULAR, TOO_BIG
from orchestrator.checks.form import (
    PROBE_OUTPUT_LIMIT,
    STDERR_LIMIT,
    Form,
    Outcome,
    Probe,
    Unreachable,
    sh,
)
from orchestrator.checks.grading import grade, run_before
from orchestrator.checks.registry import FORMS, MAX_MESSAGE, Plan, form_of, judge, plan, probes
from orchestrator.checks.service import SERVICE_PROBE
from orchestrator.report import CheckResult, Report, TaskResult

__all__ = [
    "BATCH_MARK",
    "BATCH_NEEDS",
    "BATCH_ROOM_KIB",
    "BATCH_SIZE",
    "FILE_PROBE",
    "FORMS",
    "MAX_FILE_BYTES",
    "MAX_MESSAGE",
    "MISSING",
    "NOT_BATCHED",
    "NOT_REGULAR",
    "PROBE_OUTPUT_LIMIT",
    "SERVICE_PROBE",
    "STDERR_LIMIT",
    "TOO_BIG",
    "CheckResult",
    "Form",
    "Outcome",
    "Plan",
    "Probe",
    "Report",
    "TaskResult",
    "Unreachable",
    "batch_script",
    "bounded",
    "execute",
    "execute_batch",
    "form_of",
    "grade",
    "judge",
    "parse_batch",
    "plan",
    "probes",
    "run_before",
    "sh",
]
