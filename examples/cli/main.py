"""A user's own entry point: `python main.py fit --config config.yaml [--model.hidden 128 ...]`.

The module and DataModule classes are fixed here, so the config needs no class_path for them.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kerastrainer as kt  # noqa: E402
from digits_cli import DigitData, DigitModule  # noqa: E402

if __name__ == "__main__":
    kt.cli.CLI(DigitModule, DigitData)
