"""One fit's loop object: its position, its step accounting, and where its compiled calls end.

The Trainer writes the loop itself (``for chunk in loop.chunks(...)`` in ``Trainer._train_epoch``,
every hook call inline); the `FitLoop` answers the arithmetic around it. A *chunk* is the run of
batches one compiled call trains (``steps_per_execution`` of them, or what ``"auto"`` chose); the
loop cuts chunks so that each ends where something must look (a validation point, the loggers'
interval, ``max_steps``, a callback's [`step_interval`][kerastrainer.Callback.step_interval], the end
of the epoch), counts the optimizer steps each completed, and says what is due after it. Keras's
``EpochIterator`` and Lightning's fit loop play the same part. It is built from explicit values,
never from the trainer. The functions before it count a stage's batches (``limit_*`` flags).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kerastrainer.callbacks.base import Callback
from kerastrainer.data.feeds import FitFeeds
from kerastrainer.hooks import overridden
from kerastrainer.module import TrainModule
from kerastrainer.loop_position import LoopPosition, crossed_multiple
from kerastrainer.signals import SignalCatcher

#: Batch hooks that, when overridden, make automatic chunks one batch long.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_validation_batch_start",
               "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end")


def total_batches(counts) -> int | None:
    """The batches of a run over several datasets: ``0`` for none, ``None`` if one's is unknown."""
    return None if any(n is None for n in counts) else sum(counts)


def limit_batches(flag, sources, *, flag_name: str, data_name: str) -> list:
    """Each source's batches per epoch/run after a ``limit_*`` flag (`limit_source`)."""
    return [limit_source(flag, source, flag_name=flag_name, data_name=data_name) for source in sources]


def limit_source(flag, source, *, flag_name: str, data_name: str) -> int | None:
    """Batches per epoch/run after a ``limit_*`` flag; ``None`` means unknown length (run to the end).
    ``flag_name`` and ``data_name`` are what the errors call the flag and the data.

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
        raise ValueError(f"{data_name} has no batches: the dataset is empty (a filter or take(0) that "
                         f"leaves nothing?). Pass data with at least one batch. Received: {data_name} of "
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
    if overridden(module, BATCH_HOOKS, TrainModule):
        return True
    return any(not c.chunk_aware and overridden(c, BATCH_HOOKS, Callback) for c in callbacks)


def planned_steps(num_batches: int | None, *, max_epochs: int, max_steps: int,
                  accumulate: int) -> int | float:
    """The optimizer steps a fit takes at most: ``max_steps`` when set, else ``max_epochs`` times
    the steps per epoch (a partial accumulation counts as one step); ``inf`` when unbounded or the
    data has unknown length.

    Example:
        >>> planned_steps(10, max_epochs=3, max_steps=-1, accumulate=4)
        9
    """
    total: int | float = math.inf
    if num_batches is not None and max_epochs >= 0:
        total = max_epochs * math.ceil(num_batches / accumulate)
    if max_steps >= 0:
        total = min(total, max_steps)
    return total


@dataclass(frozen=True)
class Chunk:
    """The batches one compiled training call trains: ``size`` of them, from batch ``start`` of the
    epoch."""

    start: int
    size: int


@dataclass(frozen=True)
class Advance:
    """What one chunk did: the ``batches`` it trained and the optimizer ``steps`` they completed.

    ``short`` means the data ran out before the chunk's end (data of unknown length).
    """

    batches: int
    steps: int
    short: bool


class FitLoop:
    """The loop of one fit: where it stands, how its epochs are cut into chunks, and what is due
    after each chunk.

    Args:
        position: the fit's `LoopPosition` (the position a checkpoint saves), which this loop alone
            advances.
        num_batches: training batches per epoch (``None``: unknown length, run to the end).
        num_val_batches: per validation dataset, its batches per run (``None``: unknown, ``0``:
            none); an empty list: no validation.
        val_check_interval: the Trainer flag (batches, or a fraction of the epoch).
        check_val_every_n_epoch: validate in every n-th epoch only.
        max_epochs: ``-1`` for no limit.
        max_steps: ``-1`` for no limit.
        log_every_n_steps: the loggers' interval in optimizer steps.
        min_epochs: ``should_stop`` is ignored before this many epochs.
        max_time: seconds from `start` after which the fit stops (``None``: no limit).
        step_intervals: optimizer-step intervals at which chunks must end (`step_intervals`);
            empty when ``steps_per_execution`` is a fixed number.

    Attributes:
        batches_per_step: training batches per optimizer step now in force (1 without gradient
            accumulation; a ``GradientAccumulationScheduler`` may change it every epoch).
        num_val_batches: batches per validation run, all datasets together (``0``: none,
            ``None``: unknown).
        feeds: the fit's `FitFeeds`, once `open_feeds` made them.

    Raises:
        ValueError: a ``val_check_interval`` that does not fit the data.
    """

    feeds: FitFeeds  # set by open_feeds

    def __init__(self, *, position: LoopPosition, num_batches, num_val_batches, val_check_interval,
                 check_val_every_n_epoch: int, max_epochs: int, max_steps: int,
                 log_every_n_steps: int, min_epochs: int = 0, max_time: float | None = None,
                 step_intervals=()) -> None:
        self.position = position
        self.num_batches = num_batches
        self.val_counts = list(num_val_batches)
        self.num_val_batches = total_batches(self.val_counts)
        self.val_every = (val_interval(val_check_interval, num_batches) if self.num_val_batches != 0
                          else None)
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.log_every_n_steps = log_every_n_steps
        self.min_epochs = min_epochs
        self.max_time = max_time
        self.step_intervals = sorted(set(step_intervals))
        self.batches_per_step = 1
        self.validating = False  # this epoch validates (set by begin_epoch)
        self._started = time.monotonic()
        self._signals = None

    def open_feeds(self, train, vals, *, strategy, num_workers: int = 1) -> FitFeeds:
        """Opens the fit's feeds from ``train`` and ``vals`` (its `Source`s), at the position the
        loop stands (a resumed fit skips what came before); returns them (also `feeds`)."""
        self.feeds = FitFeeds(train, vals, self.num_batches, self.val_counts, strategy=strategy,
                              num_workers=num_workers,
                              start=(self.position.first_epoch, self.position.resume_batch))
        return self.feeds

    # ------------------------------------------------------------------ the fit
    def epochs(self) -> range:
        """The epochs this fit runs, from where its position stands (none without training batches,
        and none once ``max_steps`` optimizer steps were taken: ``max_steps=0`` trains nothing)."""
        if self.num_batches == 0 or 0 <= self.max_steps <= self.position.global_step:
            return range(0)
        return range(self.position.first_epoch, self.max_epochs if self.max_epochs >= 0 else sys.maxsize)

    def start(self) -> None:
        """Starts the ``max_time`` clock (when training starts, after the sanity check)."""
        self._started = time.monotonic()

    @contextlib.contextmanager
    def catching_signals(self):
        """While training: the first SIGTERM/SIGINT is recorded, to end the fit at a chunk's end."""
        with SignalCatcher() as self._signals:
            yield

    @property
    def signal_received(self) -> int | None:
        """The SIGTERM/SIGINT received while `catching_signals`, if any."""
        return self._signals.received if self._signals is not None else None

    def ends(self, epoch: int, should_stop: bool) -> tuple:
        """Whether the fit ends after this point of ``epoch``: ``(stop, should_stop, signal)``.

        ``max_time`` sets ``should_stop``; ``should_stop`` counts from ``min_epochs`` on; ``signal``
        is the SIGTERM/SIGINT received, if any (the fit saves and exits then).
        """
        received = self.signal_received
        if 0 <= self.max_steps <= self.position.global_step:
            return True, should_stop, received
        if self.max_time is not None and time.monotonic() - self._started >= self.max_time:
            return True, True, received
        return should_stop and self.may_stop(epoch), should_stop, received

    def may_stop(self, epoch: int) -> bool:
        """Whether ``should_stop`` may end the fit in ``epoch`` (not before ``min_epochs``)."""
        return epoch + 1 >= self.min_epochs

    # ------------------------------------------------------------------ an epoch
    def begin_epoch(self, epoch: int) -> bool:
        """Enters ``epoch``; returns ``True`` when it continues one a checkpoint left mid-way."""
        self.validating = self.num_val_batches != 0 and (epoch + 1) % self.check_val_every_n_epoch == 0
        position = self.position
        resumed = epoch == position.epoch and not position.epoch_done and position.batch > 0
        position.epoch = epoch
        position.epoch_done = False
        if not resumed:
            position.batch = 0
            position.validated_at = None
        return resumed

    def training_feed(self, epoch: int):
        """The feed of ``epoch``'s training batches, from the loop's position on."""
        return self.feeds.training(epoch, self.position.batch)

    def more(self) -> bool:
        """Whether the epoch has batches after the loop's position (always, for unknown length)."""
        return self.num_batches is None or self.position.batch < self.num_batches

    def chunks(self, largest: Callable[[], int]) -> Iterator[Chunk]:
        """Yields the epoch's chunks until its batches are done. ``largest()`` is the size the
        compiled calls may have now; each chunk ends at the next point something must look, and
        is computed after `advance` counted the one before."""
        while self.more():
            yield Chunk(start=self.position.batch, size=self.chunk_size(largest()))

    def chunk_size(self, size: int) -> int:
        """The size of the chunk starting at the loop's position: at most ``size``, ending at the
        next point something must look."""
        batch = self.position.batch
        global_step = self.position.global_step
        per_step = self.batches_per_step
        for interval in self.step_intervals:  # the next multiple of each interval
            size = min(size, (interval - global_step % interval) * per_step - batch % per_step)
        if self.num_batches is not None:
            size = min(size, self.num_batches - batch)
        if self.validating and self.val_every:
            size = min(size, self.val_every - batch % self.val_every)
        if self.max_steps >= 0:  # batches left before max_steps optimizer steps
            size = min(size, (self.max_steps - global_step) * per_step - batch % per_step)
        return max(size, 1)

    def advance(self, chunk: Chunk, ran) -> Advance:
        """Counts what ``chunk`` trained. ``ran`` is the call's count of steps run; it is read
        (a device sync) only when the data's length is unknown, where a call may come up short."""
        batches = chunk.size if self.num_batches is not None else int(ran)
        before = self.position.batch
        self.position.batch += batches
        steps = self.position.batch // self.batches_per_step - before // self.batches_per_step
        self.position.global_step += steps
        return Advance(batches=batches, steps=steps, short=batches < chunk.size)

    def logs_after(self, advance: Advance) -> bool:
        """Whether ``advance``'s steps reached the loggers' interval."""
        return crossed_multiple(self.position.global_step, advance.steps, self.log_every_n_steps)

    def validates_now(self) -> bool:
        """Whether a validation run is due at the loop's position."""
        return bool(self.validating and self.val_every and self.position.batch % self.val_every == 0)

    def validation_pending(self) -> bool:
        """Whether a resumed epoch starts at a validation point that did not validate yet (the
        checkpoint was saved there, before the validation run)."""
        return self.validates_now() and self.position.validated_at != self.position.batch

    def validates_at_epoch_end(self) -> bool:
        """Whether the epoch validates at its end (data of unknown length)."""
        return self.validating and self.val_every is None and self.position.validated_at != self.position.batch

    def skipped_validation(self) -> bool:
        """Whether the epoch was to validate but ended before any validation point (a stop
        mid-epoch): its validation values are then the previous epoch's."""
        return self.validating and self.position.validated_at is None

    def mark_validated(self) -> None:
        self.position.validated_at = self.position.batch

    def leftover_step(self) -> bool:
        """Counts the optimizer step that applies an epoch's leftover accumulated batches; returns
        whether there was one (the caller applies it)."""
        if self.batches_per_step == 1 or self.position.batch % self.batches_per_step == 0:
            return False
        self.position.global_step += 1
        return True

    def ran_dry(self) -> bool:
        """Whether data of unknown length gave this epoch no batches (the fit stops then).

        Raises:
            ValueError: it gave none in the fit's first epoch either: the data is empty.
        """
        if self.num_batches is not None or self.position.batch:
            return False
        if self.position.global_step == 0:
            raise ValueError("train_data gave no batches: the dataset or generator is empty (a "
                             "filter that keeps nothing, a generator already used up?). Pass data "
                             "with at least one batch.")
        warnings.warn("train_data ran out of data: an epoch got no batches, so training stops. Pass "
                      "a generator function (called every epoch) or a repeatable dataset.")
        return True

    def end_epoch(self) -> None:
        """Marks the epoch finished (a checkpoint saved from now on resumes with the next one)."""
        self.position.epoch_done = True
