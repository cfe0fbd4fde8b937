"""``python -m kerastrainer ...``: the ``kerastrainer`` command, run as a module."""

import sys

from kerastrainer.cli import main

sys.exit(main())
