"""The `service` form: whether systemd reports a unit active and enabled."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.contract import ExecResult
from orchestrator.checks.form import Form, Probe, on_machine, sh
from orchestrator.messages import _
from orchestrator.scenario.model import Check, ServiceCondition

# the unit's name is a positional parameter, never shell text
SERVICE_PROBE = 'systemctl is-active -- "$1"; systemctl is-enabled -- "$1"; exit 0'


def _condition(check: Check) -> ServiceCondition:
    assert check.service is not None
    return check.service


def _probes(check: Check) -> list[Probe]:
    return on_machine(check, sh(SERVICE_PROBE, _condition(check).name))


def _judge(check: Check, results: Sequence[ExecResult]) -> str | None:
    cond = _condition(check)
    lines = [*results[0].stdout.split("\n"), "", ""]
    active, enabled = lines[0].strip(), lines[1].strip()
    if cond.active is not None and (active == "active") != cond.active:
        want = _("active") if cond.active else _("not active")
        return _("{service} is {state}, expected {expected}").format(
            service=cond.name, state=active or _("unknown"), expected=want
        )
    if cond.enabled is not None and (enabled in ("enabled", "enabled-runtime")) != cond.enabled:
        want = _("enabled") if cond.enabled else _("not enabled")
        return _("{service} is {state}, expected {expected}").format(
            service=cond.name, state=enabled or _("unknown"), expected=want
        )
    return None


def _title(check: Check) -> str:
    return f"{check.machine}: service {_condition(check).name}"


FORM = Form("service", _probes, _judge, _title)
