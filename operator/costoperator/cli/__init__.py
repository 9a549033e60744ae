"""The `llmcost` command line: the seed's calculators and the operator's front door.

Errors reach the user as one line on stderr and exit status 2 (bad input) — never a traceback.
"""

from __future__ import annotations

import sys

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
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("llmcost: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        # Usage errors of typer's bundled click: unknown option, unparsable value, missing flag.
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help(), file=sys.stderr)
            return 2
        command = ctx.command_path if ctx is not None else "llmcost"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"{command}: error: {' '.join(message.split())} (see --help)", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    return 0
