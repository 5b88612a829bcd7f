"""The one ``ssb`` command line.

Sub-commands are listed here explicitly (no registration by import side
effects) and imported only when chosen, so ``ssb info`` never imports torch.
Every failure prints one line to stderr and exits non-zero: 2 for bad input
(an :class:`~ssb.errors.SSBError`, a missing file), 3 for an internal error;
bad input never produces a traceback (``--debug`` shows it for any error).
Commands validate their arguments and inputs before loading any model.
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
    "batch": ("ssb.cli.batch", "analyse many SSB files into one Parquet file, locally or on Ray (resumable)"),
    "decode": ("ssb.cli.decode", "reconstruct pixels for people"),
    "codecs": ("ssb.cli.codecs", "list the stream codecs and task heads this installation has"),
    "train": ("ssb.cli.train", "train the reference codec (recipe, seeded)"),
    "eval": ("ssb.cli.eval", "rate-accuracy evaluation against pixel codecs"),
}

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (``ssb CMD: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shared_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars (they are off when stderr is not a "
                                                              "terminal anyway)")
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssb", description="Analytics on semantically structured bitstreams.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _shared_flags()
    for name, (module, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext, parents=[common])
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, one line already printed)
        return int(exc.code or 0)
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
        if args.debug:
            raise
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
    except OSError as exc:  # the machine's, not the input's or ours: disk full, device gone ...
        if args.debug:
            raise
        print(f"ssb {args.command}: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug of ours: one line, the internal-error exit code, --debug for the trace
        if args.debug:
            raise
        msg = " ".join(str(exc).split())[:300]
        print(f"ssb {args.command}: internal error: {type(exc).__name__}: {msg} (run again with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
