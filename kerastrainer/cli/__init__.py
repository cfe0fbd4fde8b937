"""The ``kerastrainer`` command line, and [`CLI`][kerastrainer.cli.config.CLI] for a user's own ``main.py``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kerastrainer.cli.config import CLI

CONFIG_COMMANDS = ("fit", "validate", "test", "predict")


def __getattr__(name: str):
    if name == "CLI":  # on first use: `launch` and `plot` never import jsonargparse or TensorFlow
        from kerastrainer.cli.config import CLI

        return CLI
    raise AttributeError(f"module 'kerastrainer.cli' has no attribute {name!r}")


def main(argv=None) -> int:
    """The ``kerastrainer`` command.

    ``kerastrainer fit|validate|test|predict --config cfg.yaml [--trainer.max_epochs 2 ...]`` runs
    a module and DataModule named in the config (see [`CLI`][kerastrainer.cli.config.CLI]);
    ``kerastrainer --version`` prints the version; ``kerastrainer plot RUN_DIR [-o curves.png]``
    draws a run's training curves to a PNG;
    ``kerastrainer launch [--nproc N] [--max-restarts K] [--start-timeout S] script.py [args...]``
    runs N workers of a MultiWorkerMirroredStrategy job on this host (like ``torchrun``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in CONFIG_COMMANDS:
        try:
            from kerastrainer.cli.config import CLI, add_working_directory, require_jsonargparse

            require_jsonargparse()
        except ModuleNotFoundError as error:
            print(f"kerastrainer {args[0]}: {error}", file=sys.stderr)
            return 2
        add_working_directory()
        CLI(args=args)
        return 0
    # standard library only: `launch` must not pay for (or depend on) importing TensorFlow
    from kerastrainer.distributed import launch as launcher

    from kerastrainer import __version__

    parser = argparse.ArgumentParser(
        prog="kerastrainer", description="kerastrainer tools. Also: kerastrainer fit|validate|test|"
        "predict --config cfg.yaml (run `kerastrainer fit --help`).")
    parser.add_argument("--version", action="version", version=f"kerastrainer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="draw a run's training curves (needs matplotlib)")
    plot.add_argument("run_dir", help="a run folder (kt_logs/version_N) or its metrics.csv")
    plot.add_argument("-o", "--output", default=None, help="the PNG to write (default: curves.png)")
    launcher.add_arguments(
        commands.add_parser("launch", help="run N workers of a multi-worker job on this host")
    )
    parsed = parser.parse_args(args)
    if parsed.command == "launch":
        return launcher.run_parsed(parsed)
    from kerastrainer.plot import plot_metrics

    try:
        path = plot_metrics(parsed.run_dir, parsed.output)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        print(f"kerastrainer plot: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
