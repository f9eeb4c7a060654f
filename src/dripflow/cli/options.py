"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="DRIPFLOW_DATABASE_URL",
        help="SQLAlchemy URL of the database (default sqlite:///./dripflow.db).",
        show_envvar=True,
    ),
]
WorkspaceOption = Annotated[
    str | None,
    typer.Option("--workspace", "-w", help="Workspace id; needed when the database holds several."),
]
