"""The ``dyntrace`` command line. Each command lives in ``dyntrace/commands/<name>.py`` as
``command`` and is imported only when used, so reading commands never load torch.

Errors are one line on stderr, never a traceback: a :class:`dyntrace.errors.DyntraceError`
(a missing, damaged or foreign file, bad input) exits 1; a usage error (a bad option) exits 2.
An exception dyntrace did not expect is a bug: it too is one line (exit 1) that says so;
``DYNTRACE_TRACEBACK=1`` shows the traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import click

from dyntrace import __version__
from dyntrace.errors import DyntraceError

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "info": "dyntrace.commands.info",
    "plot": "dyntrace.commands.plot",
    "compare": "dyntrace.commands.compare",
    "train": "dyntrace.commands.train",
    "landscape": "dyntrace.commands.landscape",
    "gallery": "dyntrace.commands.gallery",
    "report": "dyntrace.commands.report",
    "export": "dyntrace.commands.export",
}


class _UsageLine(click.ClickException):
    """A usage error shown as one line (click's own takes four), still exit status 2."""

    exit_code = 2


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name, module in COMMANDS.items() if importlib.util.find_spec(module) is not None]

    def get_command(self, ctx, name):
        if name not in COMMANDS or importlib.util.find_spec(COMMANDS[name]) is None:
            return None
        return importlib.import_module(COMMANDS[name]).command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DyntraceError as exc:
            raise click.ClickException(_one_line(str(exc))) from None
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise _UsageLine(f"{_one_line(exc.format_message())} (see '{where} -h')") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except MemoryError:
            raise click.ClickException("not enough memory for this command") from None
        except Exception as exc:  # a bug: one line that says so, not a traceback
            if os.environ.get("DYNTRACE_TRACEBACK"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                "(a bug in dyntrace; please report it; DYNTRACE_TRACEBACK=1 shows where)"
            ) from None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "error"


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dyntrace")
def main():
    """Record the training dynamics of PyTorch models and draw them."""


if __name__ == "__main__":
    main()
