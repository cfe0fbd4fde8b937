"""A worker's start under ``kerastrainer launch``: the strategy first, then the user's script.

TensorFlow sets up a MultiWorkerMirroredStrategy's collectives only before its runtime starts, so
a script that seeds, builds its ``tf.data`` pipeline or makes any tensor before
``kt.Trainer(strategy="multi_worker")`` fails with "Collective ops must be configured at program
startup". The launcher therefore starts each worker as ``python -m
kerastrainer.distributed.bootstrap script.py [args...]``: this module creates the strategy from
``TF_CONFIG`` before anything else runs, then runs the script as ``__main__`` (``sys.argv`` and
``sys.path[0]`` as ``python script.py`` sets them). The Trainer adopts the strategy (see
`kerastrainer.distributed.strategies.bootstrap_strategy`).
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv=None) -> None:
    """Creates the job's strategy when ``TF_CONFIG`` names several tasks, then runs the script.

    Args:
        argv: ``[script.py, *its arguments]`` (default: ``sys.argv[1:]``).

    Raises:
        ValueError: no script was given.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise ValueError("python -m kerastrainer.distributed.bootstrap needs the script to run, "
                         "e.g. `... bootstrap train.py --epochs 3`. Received no arguments.")
    from kerastrainer.distributed import strategies  # imports TensorFlow: the worker's own cost

    if strategies.cluster_size() > 1:
        strategies.bootstrap_strategy()
    script = os.path.abspath(argv[0])
    sys.argv = argv
    sys.path[0] = os.path.dirname(script)  # what `python script.py` puts first
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
