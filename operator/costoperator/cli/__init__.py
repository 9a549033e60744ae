"""The `llmcost` command line: the seed's calculators and the operator's front door.

Errors reach the user as one line on stderr and exit status 2 (bad input) — never a traceback.
"""

from __future__ import annotations

import sys

import click
import typer

from costengine.errors import CostEngineError
from costoperator.cli.app import app
from costoperator.traces import TraceError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llmcost` console script."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="llmcost", standalone_mode=False)
    except (CostEngineError, TraceError) as exc:
        print(f"llmcost: error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return 2
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "llmcost"
        print(f"{command}: error: {exc.format_message()} (see --help)", file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        print("llmcost: aborted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    return 0
