"""Entry point of the `loopline` command.

Adding a command group: write `cli/<name>.py` with `register(subparsers)` that adds one
subparser and sets `func=<handler>` via `set_defaults` (the handler takes the parsed
argparse.Namespace and returns an exit code), then append "<name>" to COMMAND_MODULES.
Errors: handlers raise LooplineError subclasses; main prints them as one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from loopline import __version__
from loopline.errors import LooplineError

# Command groups, in the order `loopline --help` lists them. Only modules that exist.
COMMAND_MODULES: list[str] = ["infra", "job", "models", "consistency", "attribute", "demo",
                               "bench"]

EXIT_ERROR = 2


class UsageError(LooplineError):
    """The command line itself is wrong (unknown command, missing or bad argument)."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become UsageError, printed as one line by main()."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="loopline",
        description=(
            "Loopline: a closed feedback loop for recommender systems. Kafka carries what "
            "serving showed and what users did, a PyFlink job joins them into labelled "
            "impressions and fresh Feast features, LightGBM models retrain on feedback "
            "slices, and DoWhy attributes revenue changes to model versions."
        ),
        epilog="Run `loopline COMMAND --help` for the options of a command.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show full tracebacks on errors"
    )
    parser.add_argument("--version", action="version", version=f"loopline {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    verbose = False
    try:
        args = build_parser().parse_args(argv)
        verbose = args.verbose
        if not verbose:
            _hide_library_deprecations()
        return int(args.func(args) or 0)
    except LooplineError as exc:
        _report(exc, verbose)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("loopline: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` & co.: the reader left, which is not an error. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _hide_library_deprecations() -> None:
    """PyFlink, Feast and friends warn about their own deprecations on every run, and some
    re-enable those warnings when imported (Feast: simplefilter("once", DeprecationWarning)),
    so a filter set here would not hold: drop them at display time (--verbose shows them)."""
    show = warnings.showwarning

    def quiet(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DeprecationWarning | PendingDeprecationWarning | FutureWarning) \
                or category.__name__.endswith("DeprecationWarning"):
            return
        show(message, category, *args, **kwargs)

    warnings.showwarning = quiet


def _report(exc: LooplineError, verbose: bool) -> None:
    """One line on stderr; with --verbose also the traceback and any details (log tails)."""
    if verbose:
        traceback.print_exc()
        details = getattr(exc, "details", "")
        if details:
            print(details, file=sys.stderr)
    message = " ".join(str(exc).split())  # one line, whatever the message contains
    hint = "" if verbose else " [--verbose for details]"
    print(f"loopline: error: {message}{hint if getattr(exc, 'details', '') else ''}",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
