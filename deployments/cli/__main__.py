"""`python -m deployments.cli`: the same as the `numerai-nodes` command."""

from deployments.cli import main

main()
