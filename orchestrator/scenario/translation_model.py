"""The translations of a scenario's student-facing texts, as types of the format
(`model_base`), and what they must match in the scenario (see docs/scenario-format.md,
Translations). Annotations are objects, not texts: see `model`."""

from dataclasses import field
from typing import TYPE_CHECKING, Annotated, Any

from orchestrator.messages import _, ngettext
from orchestrator.scenario.model_base import Rule, Text, strict

if TYPE_CHECKING:
    from pydantic_core import InitErrorDetails

    from orchestrator.scenario.model import Task

# --- translations: the student-facing texts in other languages (see scenario/i18n.py) ----

LANGUAGE = r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-[A-Z]{2}|-[0-9]{3})?$"


@strict
class CheckTranslation:
    """A check's name and fail message in another language."""

    name: Text | None = None
    fail_message: Text | None = None


@strict
class TaskTranslation:
    """A task's student-facing texts in another language."""

    title: Text | None = None
    instructions: Text | None = None
    #: when given, one text per hint of the task, in the same order
    hints: list[Text] | None = None
    #: by position: the first entry translates the task's first check; `{}` skips one
    checks: list[CheckTranslation] = field(default_factory=list)


@strict
class MetadataTranslation:
    """The scenario's title in another language."""

    title: Text | None = None


@strict
class Translation:
    """One language's texts; whatever it leaves out stays in English."""

    metadata: MetadataTranslation = MetadataTranslation()
    description: Text | None = None
    tasks: dict[str, TaskTranslation] = field(default_factory=dict)


def translation_problems(
    translations: dict[str, Translation], tasks: "list[Task]"
) -> "list[InitErrorDetails]":
    """Task ids that do not exist, checks and hints that the task does not have."""
    from pydantic_core import InitErrorDetails, PydanticCustomError  # validation only

    by_id = {t.id: t for t in tasks}
    problems: list[InitErrorDetails] = []

    def problem(loc: tuple[str | int, ...], message: str, value: object) -> None:
        error = PydanticCustomError("value_error", "{message}", {"message": message})
        problems.append(InitErrorDetails(type=error, loc=loc, input=value))

    for lang, translation in translations.items():
        for task_id, text in translation.tasks.items():
            task = by_id.get(task_id)
            if task is None:
                # "[key]": the position reported is the key's own, not its value's
                said = _("no task `{task}` in this scenario (its tasks: {tasks})")
                problem(
                    (lang, "tasks", task_id, "[key]"),
                    said.format(task=task_id, tasks=", ".join(by_id)),  # a scenario has tasks
                    task_id,
                )
                continue
            n = len(task.checks)
            if len(text.checks) > n:
                said = ngettext(
                    "task `{task}` has {n} check: translations of checks go by position, so"
                    " this list has at most {n} entry",
                    "task `{task}` has {n} checks: translations of checks go by position, so"
                    " this list has at most {n} entries",
                    n,
                )
                problem(
                    (lang, "tasks", task_id, "checks", n),
                    said.format(task=task_id, n=n),
                    len(text.checks),
                )
            n = len(task.hints)
            if text.hints is not None and len(text.hints) != n:
                said = ngettext(
                    "task `{task}` has {n} hint and this translation {given}: translate each"
                    " hint, in the same order",
                    "task `{task}` has {n} hints and this translation {given}: translate each"
                    " hint, in the same order",
                    n,
                )
                problem(
                    (lang, "tasks", task_id, "hints"),
                    said.format(task=task_id, n=n, given=len(text.hints)),
                    len(text.hints),
                )
    return problems


def match_tasks(value: dict[str, Translation], before: dict[str, Any]) -> dict[str, Translation]:
    """A scenario's translations checked against its tasks, validated before them; a
    located ValidationError names every mismatch."""
    tasks = before.get("tasks")
    if tasks is None:  # the tasks themselves are wrong: reported there
        return value
    problems = translation_problems(value, tasks)
    if problems:
        from pydantic_core import ValidationError  # only ever raised while validating

        # located problems: pydantic prefixes each loc with `translations`
        raise ValidationError.from_exception_data("Scenario", problems)
    return value


#: language tag (pt-BR) -> the student-facing texts in that language
Translations = Annotated[
    dict[Annotated[str, Rule(pattern=LANGUAGE)], Translation], Rule(check=match_tasks)
]
