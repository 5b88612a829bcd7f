"""The one ``ssb`` command line.

Sub-commands are listed here explicitly (no registration by import side
effects) and imported only when chosen, so ``ssb info`` never imports torch.
Every failure prints one line to stderr and exits non-zero; bad input never
produces a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ssb.errors import SSBError

#: sub-command -> (module under ssb.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("ssb.cli.info", "show the structure of an SSB file from its headers and index alone"),
    "encode": ("ssb.cli.encode", "encode images or a video into an SSB file"),
    "analyze": ("ssb.cli.analyze", "run task heads on an SSB file without pixel reconstruction"),
    "decode": ("ssb.cli.decode", "reconstruct pixels for people"),
    "train": ("ssb.cli.train", "train the reference codec (recipe, seeded)"),
    "eval": ("ssb.cli.eval", "rate-accuracy evaluation against pixel codecs"),
}

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssb", description="Analytics on semantically structured bitstreams.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=module)
        # Each command module declares its arguments in add_arguments(parser); importing it is
        # deferred to here so `ssb --help` stays light. Modules import heavy packages inside run().
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    if getattr(args, "_missing", False):
        print(f"ssb {args.command}: not available in this build", file=sys.stderr)
        return EXIT_BAD_INPUT
    mod = importlib.import_module(args._module)
    try:
        return int(mod.run(args) or 0)
    except SSBError as exc:
        print(f"ssb {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print(f"ssb {args.command}: error: no such file: {exc.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (IsADirectoryError, PermissionError) as exc:
        print(f"ssb {args.command}: error: cannot open {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `ssb info f | head`: the reader went away; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print(f"ssb {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
