"""Where a training epoch's compiled calls end: the one owner of chunk arithmetic.

A *chunk* is the run of batches one compiled call trains (``steps_per_execution`` of them, or what
``"auto"`` chose). The `BatchPlan` cuts chunks so that each ends where something must look:
a validation point, the loggers' interval, ``max_steps``, a callback's `step_interval
<kerastrainer.Callback.step_interval>` and the end of the epoch, and says after each chunk whether
to validate or to log. Keras's ``EpochIterator`` plays the same part for ``fit``.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings

from kerastrainer.callbacks.base import Callback
from kerastrainer.hooks import overrides
from kerastrainer.module import TrainModule
from kerastrainer.signals import SignalCatcher

#: Batch hooks that, when overridden, make automatic chunks one batch long.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_validation_batch_start",
               "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end")


def total_batches(counts) -> int | None:
    """The batches of a run over several datasets: ``0`` for none, ``None`` if one's is unknown."""
    return None if any(n is None for n in counts) else sum(counts)


def limit_batches(flag, sources, flag_name: str) -> list:
    """Each source's batches per epoch/run after a ``limit_*`` flag (`limit_source`)."""
    return [limit_source(flag, source, flag_name) for source in sources]


def limit_source(flag, source, flag_name: str) -> int | None:
    """Batches per epoch/run after a ``limit_*`` flag; ``None`` means unknown length (run to the end).

    Raises:
        ValueError: a fraction of data of unknown or infinite length, or one that gives 0 batches.
    """
    if source is None:
        return 0
    n = source.num_batches
    if isinstance(flag, int) and not isinstance(flag, bool):
        return flag if n is None else min(flag, n)
    if source.infinite or (n is None and flag != 1.0):
        raise ValueError(
            f"`{flag_name}` is a fraction ({flag}), but the data has "
            f"{'infinite' if source.infinite else 'unknown'} length. Pass an int number of batches, "
            f"e.g. {flag_name}=100."
        )
    if n is None:
        return None
    if n == 0:
        data = {"limit_train_batches": "train_data", "overfit_batches": "train_data",
                "limit_val_batches": "val_data", "limit_test_batches": "test_data",
                "limit_predict_batches": "the prediction data"}.get(flag_name, "the data")
        raise ValueError(f"{data} has no batches: the dataset is empty (a filter or take(0) that "
                         f"leaves nothing?). Pass data with at least one batch. Received: {data} of "
                         f"0 batches")
    limited = int(n * flag)
    if limited == 0 and flag > 0:
        raise ValueError(
            f"`{flag_name}`={flag} of {n} batches gives 0 batches. Increase it or pass an int. "
            f"Received: {flag_name}={flag}"
        )
    return limited


def val_interval(flag, n_train: int | None) -> int | None:
    """Training batches between validation runs within an epoch; ``None``: at the epoch end only.

    Raises:
        ValueError: a fractional interval with data of unknown length, or an int interval longer
            than the epoch.
    """
    if isinstance(flag, float):
        if n_train is None:
            if flag != 1.0:
                raise ValueError(
                    "`val_check_interval` is a fraction, but train_data has unknown length. Use an "
                    f"int number of batches. Received: val_check_interval={flag}")
            return None
        return max(1, int(n_train * flag))
    if n_train is not None and flag > n_train:
        raise ValueError(
            f"`val_check_interval` ({flag}) must be at most the number of training batches per "
            f"epoch ({n_train}). Received: val_check_interval={flag}")
    return flag


def step_intervals(*, steps_per_execution, log_every_n_steps: int, logs: bool, callback_intervals,
                   scheduler=None) -> list:
    """The optimizer-step intervals at which automatic chunks end: the loggers' (when values are
    logged), each callback's [`step_interval`][kerastrainer.Callback.step_interval] and a step-wise
    ``scheduler``'s frequency. None when ``steps_per_execution`` is a fixed number."""
    if steps_per_execution != "auto":
        return []
    intervals = [log_every_n_steps] if logs else []
    intervals += [interval for interval in callback_intervals if interval]
    if scheduler is not None and scheduler.interval == "step":
        intervals.append(scheduler.frequency)
    return intervals


def needs_every_batch(callbacks, module) -> bool:
    """Whether automatic chunks must be one batch long: a callback that is not ``chunk_aware`` (or
    the module) overrides a batch hook, and sees every batch as it would in Lightning."""
    return any(overrides(module, hook, TrainModule) for hook in BATCH_HOOKS) or any(
        not c.chunk_aware and any(overrides(c, hook, Callback) for hook in BATCH_HOOKS)
        for c in callbacks)


class BatchPlan:
    """Cuts a fit's training epochs into chunks and says what follows each.

    Args:
        num_batches: training batches per epoch (``None``: unknown length, run to the end).
        num_val_batches: batches per validation run (``0``: no validation).
        val_check_interval: the Trainer flag (batches, or a fraction of the epoch).
        check_val_every_n_epoch: validate in every n-th epoch only.
        max_epochs: ``-1`` for no limit.
        max_steps: ``-1`` for no limit.
        log_every_n_steps: the loggers' interval in optimizer steps.
        min_epochs: ``should_stop`` is ignored before this many epochs.
        max_time: seconds from `start` after which the fit stops (``None``: no limit).
        step_intervals: optimizer-step intervals at which chunks must end (the loggers', the
            callbacks' [`step_interval`][kerastrainer.Callback.step_interval], a step-wise LR scheduler's);
            empty when ``steps_per_execution`` is a fixed number.

    Raises:
        ValueError: a ``val_check_interval`` that does not fit the data.
    """

    def __init__(self, *, num_batches, num_val_batches, val_check_interval,
                 check_val_every_n_epoch: int, max_epochs: int, max_steps: int,
                 log_every_n_steps: int, min_epochs: int = 0, max_time: float | None = None,
                 step_intervals=()) -> None:
        self.num_batches = num_batches
        self.num_val_batches = num_val_batches
        self.val_every = (val_interval(val_check_interval, num_batches) if num_val_batches != 0
                          else None)
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.log_every_n_steps = log_every_n_steps
        self.min_epochs = min_epochs
        self.max_time = max_time
        self.step_intervals = sorted(set(step_intervals))
        self.validating = False  # this epoch validates (set by begin_epoch)
        self._started = time.monotonic()
        self._signals = None

    def epochs(self, first: int) -> range:
        """The epochs to run from ``first`` (none when there are no training batches)."""
        if self.num_batches == 0:
            return range(0)
        return range(first, self.max_epochs if self.max_epochs >= 0 else sys.maxsize)

    def start(self) -> None:
        """Starts the ``max_time`` clock (when training starts, after the sanity check)."""
        self._started = time.monotonic()

    @contextlib.contextmanager
    def catching_signals(self):
        """While training: the first SIGTERM/SIGINT is recorded, to end the fit at a chunk's end."""
        with SignalCatcher() as self._signals:
            yield

    def ends(self, global_step: int, epoch: int, should_stop: bool) -> tuple:
        """Whether the fit ends after this point of ``epoch``: ``(stop, should_stop, signal)``.

        ``max_time`` sets ``should_stop``; ``should_stop`` counts from ``min_epochs`` on; ``signal``
        is the SIGTERM/SIGINT received, if any (the fit saves and exits then).
        """
        received = self._signals.received if self._signals is not None else None
        if 0 <= self.max_steps <= global_step:
            return True, should_stop, received
        if self.max_time is not None and time.monotonic() - self._started >= self.max_time:
            return True, True, received
        return should_stop and self.may_stop(epoch), should_stop, received

    def may_stop(self, epoch: int) -> bool:
        """Whether ``should_stop`` may end the fit in ``epoch`` (not before ``min_epochs``)."""
        return epoch + 1 >= self.min_epochs

    def begin_epoch(self, epoch: int) -> None:
        self.validating = (self.num_val_batches != 0
                           and (epoch + 1) % self.check_val_every_n_epoch == 0)

    def more(self, batch: int) -> bool:
        """Whether the epoch has batches after ``batch`` (always, for data of unknown length)."""
        return self.num_batches is None or batch < self.num_batches

    def chunk(self, batch: int, global_step: int, size: int, batches_per_step: int) -> int:
        """The size of the chunk starting at ``batch``: at most ``size``, ending at the next point
        something must look."""
        per_step = batches_per_step
        for interval in self.step_intervals:  # the next multiple of each interval
            size = min(size, (interval - global_step % interval) * per_step - batch % per_step)
        if self.num_batches is not None:
            size = min(size, self.num_batches - batch)
        if self.validating and self.val_every:
            size = min(size, self.val_every - batch % self.val_every)
        if self.max_steps >= 0:  # batches left before max_steps optimizer steps
            size = min(size, (self.max_steps - global_step) * per_step - batch % per_step)
        return max(size, 1)

    def ran_dry(self, batch: int, global_step: int) -> bool:
        """Whether data of unknown length gave an epoch no batches (the fit stops then).

        Raises:
            ValueError: it gave none in the fit's first epoch either: the data is empty.
        """
        if self.num_batches is not None or batch:
            return False
        if global_step == 0:
            raise ValueError("train_data gave no batches: the dataset or generator is empty (a "
                             "filter that keeps nothing, a generator already used up?). Pass data "
                             "with at least one batch.")
        warnings.warn("train_data ran out of data: an epoch got no batches, so training stops. Pass "
                      "a generator function (called every epoch) or a repeatable dataset.")
        return True

    def validates_after(self, batch: int) -> bool:
        """Whether a validation run is due once ``batch`` batches of the epoch are done."""
        return bool(self.validating and self.val_every and batch % self.val_every == 0)

    def validates_at_end(self, batch: int, validated_at: int | None) -> bool:
        """Whether the epoch validates at its end (data of unknown length)."""
        return self.validating and self.val_every is None and validated_at != batch
