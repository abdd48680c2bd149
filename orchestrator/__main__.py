"""`python -m orchestrator`: the `guestlab` command, where no console script is installed."""

from orchestrator.cli.app import main

main()
