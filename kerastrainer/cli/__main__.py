"""``python -m kerastrainer.cli``: the same as the ``kerastrainer`` command."""

import sys

from kerastrainer.cli import main

sys.exit(main())
