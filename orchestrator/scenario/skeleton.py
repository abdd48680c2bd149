"""`guestlab new`: a scenario skeleton an author starts from, valid as written."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from jinja2 import Environment, StrictUndefined

from orchestrator.errors import UsageError
from orchestrator.messages import _
from orchestrator.scenario.model import NAME

MOTD = "This machine belongs to a guestlab exercise.\n"


def write_skeleton(scenario_id: str, folder: Path, title: str | None = None) -> list[Path]:
    """Write FOLDER/scenarios/ID.yaml and FOLDER/labs/ID/files/; refuse to overwrite."""
    if not re.fullmatch(NAME, scenario_id) or len(scenario_id) > 40:
        raise UsageError(
            _("`{scenario_id}` is not a scenario id").format(scenario_id=scenario_id),
            hint=_("at most 40 lower-case letters and digits, in words joined by single dashes"),
        )
    scenario = folder / "scenarios" / f"{scenario_id}.yaml"
    lab = folder / "labs" / scenario_id
    for path in (scenario, lab):
        if path.exists():
            raise UsageError(
                _("{path} exists already").format(path=path), hint=_("choose another id or folder")
            )
    source = resources.files("orchestrator.scenario") / "templates" / "new-scenario.yaml.j2"
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    text = env.from_string(source.read_text()).render(
        id=scenario_id,
        title=title or scenario_id.replace("-", " ").capitalize(),
        title_pt=title or scenario_id.replace("-", " ").capitalize(),
    )
    (lab / "files").mkdir(parents=True)
    (lab / "files" / "motd").write_text(MOTD)
    scenario.parent.mkdir(parents=True, exist_ok=True)
    scenario.write_text(text)
    return [scenario, lab / "files" / "motd"]
