"""The ``dyntrace`` command line. Each command lives in ``dyntrace/commands/<name>.py`` as
``command`` and is imported only when used, so reading commands never load torch.

Errors: a :class:`dyntrace.errors.DyntraceError` becomes one line on stderr and exit 1;
click's usage errors exit 2.
"""

from __future__ import annotations

import importlib
import importlib.util

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
            raise click.ClickException(str(exc)) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dyntrace")
def main():
    """Record the training dynamics of PyTorch models and draw them."""


if __name__ == "__main__":
    main()
