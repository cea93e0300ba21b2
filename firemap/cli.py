"""The ``firemap`` command line: a thin Typer layer over the library.

Each command parses options, builds a typed config, calls one library function and reports. Any
``FiremapError`` becomes a one-line message on stderr and exit code 1. Log level is set here only (-v/-q).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from firemap import __version__
from firemap.errors import FiremapError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Map active fire, smoke and burn scars in satellite scenes.")
console = Console(stderr=True)
log = logging.getLogger("firemap")

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route library logging to stderr: WARNING by default, INFO with -v, DEBUG with -vv, ERROR with -q."""
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)],
                        force=True)
    logging.captureWarnings(True)


def handle_errors(func: F) -> F:
    """Turn FiremapError (and Ctrl-C) into a one-line message and exit code 1 (130 for Ctrl-C)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FiremapError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: no partial output was left under a final name")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"firemap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """firemap: active fire, smoke and burn-scar maps from Landsat-8/9, Sentinel-2 and HLS scenes."""


def main() -> None:
    """Console-script entry point."""
    app()


# Commands are added below, one small function each. Helpers: keep your command in its own block.
