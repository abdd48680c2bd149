"""`python -m orchestrator.cli`: the `guestlab` command."""

from orchestrator.cli.app import main

main()
