"""The ``kerastrainer`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """``kerastrainer plot RUN_DIR [-o curves.png]``: draws a run's training curves to a PNG."""
    parser = argparse.ArgumentParser(prog="kerastrainer", description="kerastrainer tools")
    commands = parser.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="draw a run's training curves (needs matplotlib)")
    plot.add_argument("run_dir", help="a run folder (kt_logs/version_N) or its metrics.csv")
    plot.add_argument("-o", "--output", default=None, help="the PNG to write (default: curves.png)")
    args = parser.parse_args(argv)
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
