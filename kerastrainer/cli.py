"""The ``kerastrainer`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """The ``kerastrainer`` command.

    ``kerastrainer --version`` prints the version; ``kerastrainer plot RUN_DIR [-o curves.png]``
    draws a run's training curves to a PNG;
    ``kerastrainer launch [--nproc N] [--max-restarts K] [--start-timeout S] script.py [args...]``
    runs N workers of a MultiWorkerMirroredStrategy job on this host (like ``torchrun``).
    """
    # standard library only: `launch` must not pay for (or depend on) importing TensorFlow
    from kerastrainer.distributed import launch as launcher

    from kerastrainer import __version__

    parser = argparse.ArgumentParser(prog="kerastrainer", description="kerastrainer tools")
    parser.add_argument("--version", action="version", version=f"kerastrainer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="draw a run's training curves (needs matplotlib)")
    plot.add_argument("run_dir", help="a run folder (kt_logs/version_N) or its metrics.csv")
    plot.add_argument("-o", "--output", default=None, help="the PNG to write (default: curves.png)")
    launcher.add_arguments(
        commands.add_parser("launch", help="run N workers of a multi-worker job on this host")
    )
    args = parser.parse_args(argv)
    if args.command == "launch":
        return launcher.run_parsed(args)
    from kerastrainer.plot import plot_metrics

    try:
        path = plot_metrics(args.run_dir, args.output)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        print(f"kerastrainer plot: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
