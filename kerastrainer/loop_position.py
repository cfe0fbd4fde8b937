"""Where a fit stands: the one owner of the loop position that a checkpoint saves and restores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


def crossed_multiple(global_step: int, steps: int, every: int) -> bool:
    """Whether the last ``steps`` optimizer steps, which ended at ``global_step``, reached a
    multiple of ``every`` (the loggers' interval, a step-wise scheduler's frequency)."""
    return global_step // every > (global_step - steps) // every


@dataclass
class LoopPosition:
    """The position of a fit: epoch, optimizer steps, batches done in the epoch, and its history.

    ``trainer.current_epoch``, ``trainer.global_step`` and ``trainer.history`` read it; the fit's
    `FitLoop <kerastrainer.fit_loop.FitLoop>` alone moves it. A checkpoint stores `state_dict`, so a
    resumed fit continues at exactly this position.

    Attributes:
        epoch: the current (or last finished) epoch, from 0.
        global_step: optimizer steps taken (not batches: with ``accumulate_grad_batches=k`` a step
            takes ``k`` batches).
        batch: training batches done in the current epoch.
        epoch_done: the epoch's end was reached (its hooks ran); a resume starts the next one.
        validated_at: the batch after which this epoch last validated (``None``: not yet), so a
            resume does not validate twice at the same point.
        history: one list per logged value, one entry per finished epoch (Keras's ``History``).
    """

    epoch: int = 0
    global_step: int = 0
    batch: int = 0
    epoch_done: bool = False
    validated_at: int | None = None
    history: dict = field(default_factory=dict)
    _iteration_offset: int | None = field(default=None, init=False, repr=False)

    @property
    def first_epoch(self) -> int:
        """The epoch a fit starting from this position runs first."""
        return self.epoch + 1 if self.epoch_done else self.epoch

    @property
    def resume_batch(self) -> int:
        """The batch of `first_epoch` a fit starting from this position runs first."""
        return 0 if self.epoch_done else self.batch

    def record_epoch(self, metrics: dict) -> None:
        """Appends the finished epoch's ``metrics`` (floats) to `history`."""
        done = len(self.history.get("epoch", []))
        for key in metrics.keys() | self.history.keys() - {"epoch"}:
            self.history.setdefault(key, [None] * done).append(metrics.get(key))
        self.history.setdefault("epoch", []).append(self.epoch)

    # ------------------------------------------------------------------ global_step vs the optimizer
    def watch_optimizer(self, iterations) -> None:
        """Remembers the optimizer's step counter (a variable, or ``None`` when it does not count
        the loop's steps) at the start of a fit: it need not start at 0."""
        self._iteration_offset = (None if iterations is None
                                  else int(iterations.numpy()) - self.global_step)

    def check_optimizer(self, iterations) -> None:
        """Checks that ``global_step`` counted the optimizer's steps (Orbit makes the same check).

        Raises:
            RuntimeError: the optimizer took a different number of steps than the loop counted.
        """
        if self._iteration_offset is None or iterations is None:
            return
        taken = int(iterations.numpy()) - self._iteration_offset
        if taken != self.global_step:
            raise RuntimeError(
                f"trainer.global_step is {self.global_step}, but the optimizer's iterations counter "
                f"says {taken} steps were applied in this fit. Something outside the Trainer applied "
                "(or reset) the optimizer; apply gradients only in training_step with "
                "automatic_optimization = False, or leave optimizer.iterations alone.")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "global_step": self.global_step, "batches_done": self.batch,
                "epoch_done": self.epoch_done,
                "validated_at": -1 if self.validated_at is None else self.validated_at,
                "history": json.dumps(self.history)}  # metric names may hold '/'

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.batch = int(state["batches_done"])
        self.epoch_done = bool(state["epoch_done"])
        self.validated_at = int(state["validated_at"]) if int(state["validated_at"]) >= 0 else None
        self.history = json.loads(state.get("history", "{}"))
