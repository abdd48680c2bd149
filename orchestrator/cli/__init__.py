"""The `guestlab` command: a module per command group, the shared options once, and the
only place that prints and picks exit codes (`app.main`).

Importing this package loads click, rich's console and the shared options; a command's
module is imported when the command runs or is listed (`app.WHERE`), and it imports an
engine SDK or the scenario format only when it needs them.
"""

from orchestrator.cli.app import cli, main

__all__ = ["cli", "main"]
