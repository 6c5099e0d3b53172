"""The ``napari-patchwork`` command line: the widgets' jobs without a GUI.

    napari-patchwork demo [OUT_DIR]
    napari-patchwork tile IMAGE... [--mask MASK] --size 256 [--preview FILE.png] -o DIR
    napari-patchwork cluster IMAGE... -k 5 [--posterized FILE.png] -o LABELS.tif
    napari-patchwork stitch DIR -o OUT.tif

Run ``napari-patchwork COMMAND --help`` for every option. Bad input ends with a
one-line message on stderr and exit code 2 (usage) or 1 (a file that cannot be
read or written). No napari, no Qt: this module imports only the core.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_patchwork import __version__
from napari_patchwork.cli import cluster, demo, stitch, tile
from napari_patchwork.cli.common import PROG, CLIError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Patch grids, pixel clustering and patch export, without a GUI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (demo, tile, cluster, stitch):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.code
    except (ValueError, FileExistsError) as err:  # the core's errors say what to change
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
