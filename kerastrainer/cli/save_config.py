"""The resolved config of a CLI run, saved in its run folder."""

from __future__ import annotations

import os
from typing import Any

from kerastrainer.callbacks.base import Callback
from kerastrainer.checkpoint_io import atomic_write_text


class SaveConfig(Callback):
    """Writes the config a [`CLI`][kerastrainer.cli.config.CLI] run resolved to ``<log_dir>/config.yaml``
    when the run begins (the chief only, atomically). A run folder that already holds a different
    one (a resumed fit with other options) keeps it: the new one goes to ``config_1.yaml``, ...

    Args:
        text: the YAML to write.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.path: str | None = None

    def setup(self, trainer: Any, module: Any, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        folder, name, number = trainer.log_dir, "config.yaml", 0
        while os.path.exists(os.path.join(folder, name)):
            with open(os.path.join(folder, name)) as saved:
                if saved.read() == self.text:
                    break  # the same config: nothing new to keep
            number += 1
            name = f"config_{number}.yaml"
        self.path = os.path.join(folder, name)
        atomic_write_text(self.path, self.text)
