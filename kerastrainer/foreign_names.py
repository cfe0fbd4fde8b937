"""The argument names users bring from Keras's ``fit`` and Lightning's ``Trainer``, and what
kerastrainer calls them: an unknown keyword is refused with the name to use instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

_ONE_HOST = "strategy='mirrored' (every GPU of this host; kerastrainer launch for several hosts)"

#: Trainer keywords of Keras's fit and Lightning's Trainer -> the flag to use.
TRAINER_NAMES = {
    "epochs": "max_epochs",
    "accelerator": "strategy (kerastrainer uses the devices TensorFlow sees; strategy='mirrored' "
                   "spreads a batch over several GPUs)",
    "devices": _ONE_HOST,
    "gpus": _ONE_HOST,
    "num_nodes": "kerastrainer launch (docs/distributed.md)",
    "verbose": "enable_progress_bar=False (to silence the bar)",
    "steps_per_epoch": "limit_train_batches",
    "validation_steps": "limit_val_batches",
    "validation_freq": "check_val_every_n_epoch",
}

_DATA = "train_data=(x, y) (one argument: the inputs and the targets together)"

#: keywords of Keras's fit and Lightning's Trainer.fit -> what Trainer.fit takes.
FIT_NAMES = {
    "x": _DATA,
    "y": _DATA,
    "sample_weight": "train_data=(x, y, sample_weight)",
    "validation_data": "val_data",
    "train_dataloaders": "train_data",
    "val_dataloaders": "val_data",
    "epochs": "Trainer(max_epochs=...)",
    "callbacks": "Trainer(callbacks=[...])",
    "verbose": "Trainer(enable_progress_bar=False)",
    "steps_per_epoch": "Trainer(limit_train_batches=...)",
    "validation_steps": "Trainer(limit_val_batches=...)",
    "validation_freq": "Trainer(check_val_every_n_epoch=...)",
    "initial_epoch": "ckpt_path=... (an exact resume from a checkpoint)",
}

#: keywords of Keras's evaluate/predict and Lightning's validate/test/predict -> what kerastrainer takes.
EVAL_NAMES = {
    "x": "data=(x, y) (predict: data=x)",
    "y": "data=(x, y)",
    "sample_weight": "data=(x, y, sample_weight)",
    "dataloaders": "data",
    "verbose": "Trainer(enable_progress_bar=False)",
    "steps": "Trainer(limit_val_batches=...), limit_test_batches or limit_predict_batches",
    "callbacks": "Trainer(callbacks=[...])",
}


def shown(value: Any) -> str:
    """A short description of ``value`` for an error message (arrays by shape, not by content)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<{type(value).__name__} of shape {tuple(shape)}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_unknown(where: str, given: dict, known: Iterable[str], names: dict) -> None:
    """Refuses the first keyword of ``given`` that ``where`` does not take, with the name to use.

    Args:
        where: what was called, e.g. ``"Trainer.fit()"``.
        given: the keywords that matched no parameter.
        known: the names ``where`` takes (for a close match of a typo).
        names: the names other libraries use, mapped to kerastrainer's (`TRAINER_NAMES`, ...).

    Raises:
        TypeError: naming the keyword, the name to use and the value received.
    """
    for name, value in given.items():
        if name in names:
            hint = f"Use {names[name]} instead. "
        else:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"Did you mean `{close[0]}`? " if close else ""
        raise TypeError(f"{where} has no argument `{name}`. {hint}Received: {name}={shown(value)}")
