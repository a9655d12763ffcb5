"""`numerai-nodes infra`: the cloud places nodes run on (AWS ECS, GCP Cloud Run, Azure ACI) and
their pools.

Each place's command group has the same commands and options: `up [--skip-keys]`,
`down [--delete-bucket]` (Azure: `--delete-storage`) and `status [--json]`.
"""

from __future__ import annotations

import typer

from deployments.cli.infra_aws import app as aws_app
from deployments.cli.infra_azure import app as azure_app
from deployments.cli.infra_gcp import app as gcp_app

app = typer.Typer(
    help="Create, inspect and delete the cloud infrastructure of ECS, Cloud Run and ACI nodes.",
    no_args_is_help=True,
)
app.add_typer(aws_app, name="aws")
app.add_typer(gcp_app, name="gcp")
app.add_typer(azure_app, name="azure")
