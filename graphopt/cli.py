"""The ``graphopt`` command line: one subcommand per module in ``graphopt/commands/``.

Every failure the user can act on (a ``GraphoptError``: bad model spec, wrong shape or dtype,
untraceable model, unknown pass, failed verification, unsupported op) is one line on stderr,
``graphopt: error: ...``, and exit status 2. ``--debug`` shows the traceback instead. Ctrl-C (or
SIGTERM) at any stage is ``graphopt: interrupted`` and exit status 130 (143), leaving no artifact.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from graphopt import __version__, interrupts
from graphopt.errors import GraphoptError, first_line

DESCRIPTION = "A compiler-style graph optimizer for PyTorch models: capture, optimize, compile with TVM."


def build_parser() -> argparse.ArgumentParser:
    from graphopt import commands

    parser = argparse.ArgumentParser(prog="graphopt", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"graphopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands.command_names():
        try:
            module = commands.load(name)
            module.add_parser(subparsers)
        except Exception as error:  # a broken command module must not take the others down
            _add_broken(subparsers, name, error)
            continue
        subparsers.choices[name].set_defaults(run=module.run)
    for sub in subparsers.choices.values():
        _plain_text(sub)
        if any("--debug" in action.option_strings for action in sub._actions):
            continue
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def _plain_text(parser: argparse.ArgumentParser) -> None:
    """The commands' docstrings are reST (``code``); --help shows them as plain text (`code`)."""
    if parser.description:
        parser.description = parser.description.replace("``", "`")
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = action.help.replace("``", "`")


def _add_broken(subparsers: Any, name: str, error: Exception) -> None:
    def run(args: argparse.Namespace) -> int:
        raise GraphoptError(f"the '{name}' command failed to load: {type(error).__name__}: {error}") from error

    broken = subparsers.add_parser(name, help="(failed to load; run it to see why)", add_help=False)
    broken.add_argument("rest", nargs=argparse.REMAINDER)
    broken.set_defaults(run=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphopt`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not debug:  # torch's and TVM's own notices are not the user's to act on
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", module=r"(torch|tvm|tvm_ffi)(\.|$)")
    try:
        args = build_parser().parse_args(argv)
        with interrupts.handling_interrupts(), _native_stderr_hidden(not debug):
            try:
                return int(args.run(args) or 0)
            except Exception:
                interrupts.check()  # an error that is really a Ctrl-C (TVM wraps it in its own)
                raise
    except GraphoptError as error:
        return _fail(str(error), error, debug)
    except KeyboardInterrupt as error:
        print("graphopt: interrupted", file=sys.stderr)
        return error.exit_status if isinstance(error, interrupts.Interrupted) else 130
    except (OSError, MemoryError) as error:
        return _fail(f"{type(error).__name__}: {error}", error, debug)
    except Exception as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        message = f"internal error: {type(error).__name__}: {first_line(error)} (in {where.filename}:{where.lineno})"
        if not debug:
            message += "; rerun with --debug for the traceback and please report it"
        _fail(message, error, debug)
        return 1


@contextlib.contextmanager
def _native_stderr_hidden(hidden: bool) -> Iterator[None]:
    """Within the block, what native code (TVM's C++ logging: "Warning: Scope Saving", ...) writes to
    file descriptor 2 is dropped; Python's own ``sys.stderr`` (progress, errors) still shows.
    ``--debug`` keeps everything."""
    if not hidden:
        yield
        return
    try:
        python_writes_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by something without a descriptor
        python_writes_fd2 = False
    sys.stderr.flush()
    saved = os.dup(2)
    original = sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        if python_writes_fd2:
            sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=original.encoding, errors="backslashreplace")  # noqa: SIM115
        try:
            yield
        finally:
            if sys.stderr is not original:
                sys.stderr.close()
                sys.stderr = original
            os.dup2(saved, 2)
            os.close(saved)


def _fail(message: str, error: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    print(f"graphopt: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
