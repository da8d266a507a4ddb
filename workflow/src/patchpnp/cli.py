"""The ``patchpnp`` command: every workflow step, runnable without Snakemake.

Snakemake's rules call these subcommands and hold no science themselves; neither does
this module. Every command is declared once in :data:`patchpnp.commands.COMMANDS`: the
function that does its work (``module:function``) and its option groups, each option
declared once in :data:`patchpnp.commands.OPTIONS`. The parser is built from that table;
the function is imported only when its command runs, so ``patchpnp check-config`` and
``patchpnp tables`` never load torch, and it receives the parsed options as keyword
arguments of the same names, a group with a class as one object of it
(``tests/test_cli.py`` checks every function and class against the table). A returned
string is printed.

Errors in the input (bad files, bad settings) end the command with exit status 2 and
one line naming the file or key; nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from patchpnp.commands import COMMANDS, Command
from patchpnp.startup import untraced_imports

log = logging.getLogger("patchpnp")


def build_parser() -> argparse.ArgumentParser:
    """``patchpnp`` and one subcommand per entry of the table."""
    p = argparse.ArgumentParser(prog="patchpnp", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        parser = sub.add_parser(command.name, help=command.help, description=command.help)
        for option in command.options():
            option.add_to(parser)
    return p


def resolve(target: str) -> Callable:
    """The function or class ``module:name`` names (imported now, not at parse time)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def arguments(command: Command, args: argparse.Namespace) -> dict:
    """The keyword arguments of ``command``'s function: each option under its ``dest``, a
    group with a class as one object of it under the group's ``param``."""
    values = vars(args)
    kwargs = {}
    for group in command.groups:
        given = {o.dest: values[o.dest] for o in group.resolved()}
        if group.into:
            kwargs[group.param] = resolve(group.into)(**given)
        else:
            kwargs.update(given)
    return kwargs


def call(command: Command, args: argparse.Namespace):
    """``command``'s function, called with the parsed options (:func:`arguments`). Its
    module is imported with the garbage collector held off and then frozen
    (:mod:`patchpnp.startup`): a job's start and exit cost less."""
    with untraced_imports():
        function = resolve(command.target)
    return function(**arguments(command, args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One torch-free base class: catching it imports nothing the command does not need.
    from patchpnp.errors import PatchpnpError
    from patchpnp.pipeline.faults import InjectedFault, maybe_fail

    try:
        maybe_fail(" ".join(sys.argv[1:] if argv is None else argv))
        out = call(COMMANDS[args.command], args)
    except (PatchpnpError, FileNotFoundError) as err:
        print(f"patchpnp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except InjectedFault as err:
        print(f"patchpnp {args.command}: {err}", file=sys.stderr)
        return 3
    except Exception as err:
        from patchpnp.pipeline.out_of_memory import is_out_of_memory, out_of_memory_message

        if not is_out_of_memory(err):
            raise
        # Outputs are written atomically, so a job stopped here leaves none behind.
        print(f"patchpnp {args.command}: error: {out_of_memory_message(args.command, err)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if isinstance(out, str):
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
