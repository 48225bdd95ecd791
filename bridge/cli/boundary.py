"""The `dotbridge` group's class, its one error boundary, and logging set by -v."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from bridge.errors import BadInput, DotbridgeError

# The name the boundary always logged under: `-vv` output stays the same.
log = logging.getLogger("bridge.cli")
BROKEN_PIPE = 141


class Dotbridge(click.Group):
    """The command group, and the one boundary where any failure becomes a user's sentence."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # `dotbridge search ... | head`: the reader has what it wanted. No message; the rest
            # of the output goes nowhere, and the status is a shell's for SIGPIPE (128 + 13).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(BROKEN_PIPE) from None
        except Exception as exc:
            raise user_error(exc) from exc


def user_error(exc: Exception) -> click.ClickException:
    """One sentence for an exception the library let through; the traceback only with -vv."""
    from bridge.backends import client_errors

    log.debug("failure behind the message below", exc_info=exc)
    if isinstance(exc, client_errors()):
        from bridge.client import describe_failure

        return describe_failure(exc)
    if isinstance(exc, ValueError):
        text = str(exc).rstrip(".")
        return BadInput(f"{text[:1].upper()}{text[1:]}.")
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return BadInput(f"{exc.strerror}{where}.")
    return DotbridgeError(
        f"dotbridge failed unexpectedly ({type(exc).__name__}: {exc}); run it again with -vv "
        "to see where, and report it."
    )


def configure_logging(verbose: int) -> None:
    """Warnings by default, -v info, -vv debug; the libraries' chatter only with -vv."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        # opensearch-py logs every 404 as a warning; dotbridge reports what matters itself.
        logging.getLogger("opensearch").setLevel(logging.ERROR)
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # read when huggingface_hub loads
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
