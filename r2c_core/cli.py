"""Command line entry point. Each command group lives in ``r2c_core/commands/<group>.py`` with a
``register(subparsers)`` function that adds its sub-commands, each bound to ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import R2CError

#: Command modules, in help order. Each exposes ``register(subparsers)``.
COMMAND_MODULES = (
    "r2c_core.commands.models",
    "r2c_core.commands.segmentation",
    "r2c_core.commands.training",
    "r2c_core.commands.baselines",
    "r2c_core.commands.quality",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m r2c_core", description="R2C-GAN restoration, classification and lung segmentation")
    parser.add_argument("--log-level", default="WARNING", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except R2CError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory (try a smaller batch or image)", file=sys.stderr)
        return 2
    except Exception as exc:  # last resort: one line, never a traceback
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(f"error: unexpected {exc.__class__.__name__}: {exc} (run with --log-level DEBUG for details)", file=sys.stderr)
        return 1
