"""The `guestlab` command: a module per command group, the shared options once, and the
only place that prints and picks exit codes (`app.main`).

Importing this package loads click, rich and the command modules, no engine SDK and no
scenario format: each command imports those when it runs.
"""

from orchestrator.cli.app import cli, main

__all__ = ["cli", "main"]
