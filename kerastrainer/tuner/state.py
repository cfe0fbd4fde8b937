"""What a tuning run must leave as it found it, and the short trainer it runs on."""

from __future__ import annotations

from typing import Any

import keras

from kerastrainer.seed import rng_state, set_rng_state


class ModuleSnapshot:
    """The module's variables, its optimizer (and that optimizer's variables), its trainer and the
    global random generators, taken before a tuning run and put back after it.

    A module that is not built yet is captured by `capture` once the run has built it: its
    initial weights are what the later fit starts from.
    """

    def __init__(self, module) -> None:
        self.module = module
        self.rng = rng_state()
        self.optimizer = getattr(module, "optimizer", None)
        self.trainer = module.trainer
        self.optimizer_values = _values(self.optimizer.variables) \
            if isinstance(self.optimizer, keras.optimizers.Optimizer) and self.optimizer.built else []
        self.values = _values(module.variables) if module.built else None

    def capture(self) -> None:
        """Takes the weights now if they were not built when the snapshot was made."""
        if self.values is None:
            self.values = _values(self.module.variables)

    def restore(self) -> None:
        """Puts everything back (the variables by identity: ones made during the run stay)."""
        for variable, value in (self.values or []) + self.optimizer_values:
            variable.assign(value)
        self.module.optimizer = self.optimizer
        self.module.trainer = self.trainer
        set_rng_state(self.rng)


def _values(variables) -> list:
    return [(variable, variable.numpy()) for variable in variables]


def sweep_trainer(trainer, *, max_steps: int, callbacks: list) -> Any:
    """A Trainer for a tuning run: ``trainer``'s numerics (strategy, precision, XLA, clipping),
    no logger, checkpoint, progress bar, summary, validation or user callbacks, one batch per
    compiled call, ``max_steps`` optimizer steps."""
    flags = trainer.flags
    jit = flags.jit_compile
    return type(trainer)(  # the trainer's own class: no import of the Trainer here
        max_steps=max_steps, limit_val_batches=0, num_sanity_val_steps=0, steps_per_execution=1,
        jit_compile=False if jit == "auto" else jit,  # a short run: never spend it measuring XLA
        run_eagerly=flags.run_eagerly, precision=flags.precision, strategy=trainer.strategy,
        gradient_clip_val=flags.gradient_clip_val,
        gradient_clip_algorithm=flags.gradient_clip_algorithm,
        detect_anomaly=flags.detect_anomaly, callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=flags.default_root_dir)


def find_attribute(module, names: tuple, *, holder=None) -> tuple | None:
    """Where a tuned value goes: the first of ``names`` that ``holder`` (a DataModule) has, else
    that ``module.hparams`` holds, else a number attribute of the module. Returns
    ``(object, name, label)`` or ``None``."""
    for name in names:
        if holder is not None and hasattr(holder, name):
            return holder, name, f"{type(holder).__name__}.{name}"
    for name in names:
        if name in module.hparams:
            return module.hparams, name, f"hparams.{name}"
    for name in names:
        if isinstance(vars(module).get(name), (int, float)):
            return module, name, f"{type(module).__name__}.{name}"
    return None


def set_attribute(place: tuple, value) -> None:
    """Writes ``value`` where `find_attribute` pointed."""
    target, name, _ = place
    if isinstance(target, dict):
        target[name] = value
    else:
        setattr(target, name, value)
