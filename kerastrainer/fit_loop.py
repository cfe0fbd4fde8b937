"""One fit's position and step accounting: the loop object that yields the training chunks.

The Trainer writes the loop itself (``for chunk in loop.chunks(...)`` in ``Trainer._train_epoch``,
every hook call inline); the `FitLoop` answers the arithmetic around it: where the fit stands, how
many optimizer steps a chunk completed, and what is due after it. Keras's ``EpochIterator`` and
Lightning's fit loop play the same part. It is built from explicit values, never from the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kerastrainer.plan import BatchPlan
from kerastrainer.progress import Progress, crossed_multiple


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
    """The position of one fit and its step accounting.

    Args:
        plan: the fit's `BatchPlan` (where chunks end, when the fit ends).
        feeds: the fit's `FitFeeds` (where the batches come from).
        progress: the fit's `Progress`, which this loop alone advances (a checkpoint saves it).

    Attributes:
        batches_per_step: training batches per optimizer step now in force (1 without gradient
            accumulation; a ``GradientAccumulationScheduler`` may change it every epoch).
    """

    def __init__(self, *, plan: BatchPlan, feeds, progress: Progress) -> None:
        self.plan = plan
        self.feeds = feeds
        self.progress = progress
        self.batches_per_step = 1

    @property
    def batch(self) -> int:
        """Training batches done in the current epoch."""
        return self.progress.batch

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    def epochs(self) -> range:
        """The epochs this fit runs, from where its position stands."""
        return self.plan.epochs(self.progress.first_epoch)

    def begin_epoch(self, epoch: int) -> bool:
        """Enters ``epoch``; returns ``True`` when it continues one a checkpoint left mid-way."""
        self.plan.begin_epoch(epoch)
        return self.progress.start_epoch(epoch)

    def training_feed(self, epoch: int):
        """The feed of ``epoch``'s training batches, from the loop's position on."""
        return self.feeds.training(epoch, self.progress.batch)

    def chunks(self, largest: Callable[[], int]) -> Iterator[Chunk]:
        """Yields the epoch's chunks until its batches are done; ``largest()`` is the size the
        compiled calls may have now, which the plan cuts where something must look. Each chunk
        is computed after `advance` counted the one before."""
        while self.plan.more(self.progress.batch):
            start = self.progress.batch
            size = self.plan.chunk(start, self.progress.global_step, largest(), self.batches_per_step)
            yield Chunk(start=start, size=size)

    def advance(self, chunk: Chunk, ran) -> Advance:
        """Counts what ``chunk`` trained. ``ran`` is the call's count of steps run; it is read
        (a device sync) only when the data's length is unknown, where a call may come up short."""
        batches = chunk.size if self.plan.num_batches is not None else int(ran)
        steps = self.progress.advance(batches, self.batches_per_step)
        return Advance(batches=batches, steps=steps, short=batches < chunk.size)

    def logs_after(self, advance: Advance) -> bool:
        """Whether ``advance``'s steps reached the loggers' interval."""
        return crossed_multiple(self.progress.global_step, advance.steps, self.plan.log_every_n_steps)

    def validates_now(self) -> bool:
        """Whether a validation run is due at the loop's position."""
        return self.plan.validates_after(self.progress.batch)

    def validation_pending(self) -> bool:
        """Whether a resumed epoch starts at a validation point that did not validate yet (the
        checkpoint was saved there, before the validation run)."""
        return self.validates_now() and self.progress.validated_at != self.progress.batch

    def validates_at_epoch_end(self) -> bool:
        return self.plan.validates_at_end(self.progress.batch, self.progress.validated_at)

    def mark_validated(self) -> None:
        self.progress.validated_at = self.progress.batch

    def more(self) -> bool:
        """Whether the epoch has batches after the loop's position."""
        return self.plan.more(self.progress.batch)

    def leftover_step(self) -> bool:
        """Counts the optimizer step that applies an epoch's leftover accumulated batches; returns
        whether there was one (the caller applies it)."""
        if self.batches_per_step == 1 or self.progress.batch % self.batches_per_step == 0:
            return False
        self.progress.add_step()
        return True

    def ran_dry(self) -> bool:
        """Whether data of unknown length gave this epoch no batches (see `BatchPlan.ran_dry`)."""
        return self.plan.ran_dry(self.progress.batch, self.progress.global_step)

    def end_epoch(self) -> None:
        self.progress.end_epoch()
