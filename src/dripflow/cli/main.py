"""The `dripflow` command: one Typer app, one module per command group."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from dripflow.cli import (
    cleanup,
    contacts,
    db,
    events,
    inbound,
    keys,
    outbox,
    serve,
    simulation,
    worker,
    workspace,
)
from dripflow.core.errors import UserError

app = typer.Typer(
    name="dripflow",
    help="Self-hosted marketing automation and email sequences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(contacts.app, name="contacts")
cleanup.register(contacts.app)
app.add_typer(events.app, name="events")
app.add_typer(keys.app, name="keys")
app.add_typer(outbox.app, name="outbox")
workspace.register(app)
simulation.register(app)
worker.register(app)
serve.register(app)
inbound.register(app)

_err = Console(stderr=True)


def main() -> None:
    """Run the CLI so that no traceback ever reaches the user (set DRIPFLOW_DEBUG=1 to see one)."""
    try:
        app(standalone_mode=True)
    except UserError as exc:
        _err.print(f"error: {exc}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: a bug, reported without a traceback
        if os.environ.get("DRIPFLOW_DEBUG"):
            raise
        _err.print(
            f"internal error: {type(exc).__name__}: {exc} (set DRIPFLOW_DEBUG=1 for details)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(70)


if __name__ == "__main__":
    main()
