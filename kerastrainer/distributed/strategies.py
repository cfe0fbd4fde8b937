"""The ``strategy`` flag: which ``tf.distribute.Strategy`` a Trainer runs under."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import tensorflow as tf

#: Seconds a collective may wait for its peers before the job fails (rather than hangs). Longer
#: than a first trace + compile and a checkpoint save. ``KT_COLLECTIVE_TIMEOUT`` (set by
#: ``kerastrainer launch --collective-timeout S``) overrides it.
COLLECTIVE_TIMEOUT_SECONDS = 600.0


def collective_timeout() -> float:
    """``KT_COLLECTIVE_TIMEOUT`` in seconds, else `COLLECTIVE_TIMEOUT_SECONDS`.

    Raises:
        ValueError: the variable is not a positive, finite number of seconds.
    """
    text = os.environ.get("KT_COLLECTIVE_TIMEOUT")
    if not text:
        return COLLECTIVE_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError("KT_COLLECTIVE_TIMEOUT must be a positive number of seconds. "
                         f"Received: KT_COLLECTIVE_TIMEOUT={text!r}")
    return seconds


def cluster_size() -> int:
    """Tasks named in ``TF_CONFIG`` (1 without one)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return sum(len(tasks) for tasks in config.get("cluster", {}).values()) or 1


STRATEGY_NAMES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name) -> tf.distribute.Strategy:
    """Turns the ``strategy`` flag into a ``tf.distribute.Strategy`` (see ``Trainer(strategy=...)``).

    ``"auto"``: MultiWorkerMirrored when ``TF_CONFIG`` names a cluster of several tasks, Mirrored when
    several GPUs are visible, else the default (no distribution). ``"mirrored"`` uses every local GPU,
    or every logical CPU device when there is no GPU (tests configure two at process start).

    Raises:
        ValueError: anything else than those names, ``None`` or a strategy instance.
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    if name is None:
        name = "auto"
    if not isinstance(name, str) or name not in STRATEGY_NAMES:
        raise ValueError(
            "`strategy` must be 'auto', 'one_device', 'mirrored', 'multi_worker' or a "
            f"tf.distribute.Strategy instance. Received: strategy={name!r}"
        )
    if name == "auto":
        if cluster_size() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return bootstrap_strategy()


_BOOTSTRAPPED: list = []  # the process's MultiWorkerMirroredStrategy, made once


def bootstrap_strategy() -> tf.distribute.Strategy:
    """The process's MultiWorkerMirroredStrategy, created on the first call (``TF_CONFIG`` names
    the cluster); `kerastrainer.distributed.bootstrap` calls it before the user's script runs.

    Raises:
        RuntimeError: TensorFlow already ran an op (the script seeded or built data first) in a
            worker not started by ``kerastrainer launch``: the message says what to move.
    """
    if _BOOTSTRAPPED:
        return _BOOTSTRAPPED[0]
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=collective_timeout())
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        if "at program startup" not in str(error):
            raise
        raise RuntimeError(
            "strategy='multi_worker' must be created before TensorFlow runs anything in the "
            "process, but this script already did (seeded, built a tf.data pipeline or made a "
            "tensor before kt.Trainer(...)). Start it with `kerastrainer launch --nproc N "
            "script.py`, which creates the strategy first, or create the Trainer (or call "
            "kerastrainer.distributed.strategies.bootstrap_strategy()) at the top of the script."
        ) from error
    _BOOTSTRAPPED.append(strategy)
    return strategy


def global_rank(strategy) -> int:
    """This worker's index: the task index under MultiWorkerMirrored, else 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None and resolver.task_type else 0


def num_workers(strategy) -> int:
    """Worker processes taking part (1 unless the strategy spans a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(kind, [])) for kind in ("chief", "worker")) or 1


def topology(strategy) -> tuple[int, int, int]:
    """``(world_size, num_workers, global_rank)``: replicas in sync over all workers, worker
    processes, and this worker's index."""
    return strategy.num_replicas_in_sync, num_workers(strategy), global_rank(strategy)


def distribute_dataset(strategy, dataset, num_workers: int = 1):
    """Splits every global batch of ``dataset`` over the strategy's replicas (and workers)."""
    if strategy.num_replicas_in_sync == 1:
        return dataset
    if num_workers > 1:  # each worker takes its part of every global batch
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return strategy.experimental_distribute_dataset(dataset)


class Agreement:
    """Sums (or gathers) small vectors over every replica of every worker (one collective each).

    Under MultiWorkerMirrored the workers must take the same decisions at the same steps (stop on a
    signal, early stopping, ``max_time``) and read device values at the same points, or one of
    them waits forever in a collective the others never join. The Trainer calls this at chunk ends,
    which are at the same steps on every worker. With one worker (``solo``) every decision is
    this worker's own, and nothing is exchanged.
    """

    def __init__(self, strategy) -> None:
        self.strategy = strategy
        self.solo = num_workers(strategy) == 1

        def reduce(values):
            def on_replica(local):
                # tf.identity puts the host value on this replica's device: a collective needs one.
                return tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.identity(local))

            summed = strategy.run(on_replica, args=(values,))
            return strategy.experimental_local_results(summed)[0]

        def gather(values):
            def on_replica(local):
                return tf.distribute.get_replica_context().all_gather(
                    tf.identity(local)[tf.newaxis], axis=0)

            gathered = strategy.run(on_replica, args=(values,))
            return strategy.experimental_local_results(gathered)[0]

        self._reduce = tf.function(reduce)
        self._gather = tf.function(gather)

    def sum(self, values) -> list:
        """Each entry summed over all replicas (a worker with R local replicas counts R times)."""
        return [int(v) for v in self._reduce(tf.constant(list(values), tf.int64)).numpy()]

    def from_chief(self, value: int) -> int:
        """The chief's ``value`` on every worker (e.g. its shuffle seed; ``None`` stays ``None``)."""
        if self.solo or value is None:
            return value
        chief = global_rank(self.strategy) == 0
        local_replicas = self.strategy.num_replicas_in_sync // num_workers(self.strategy)
        return self.sum([value if chief else 0])[0] // local_replicas

    def decide_stop(self, stop: bool, should_stop: bool, received) -> tuple:
        """One stop decision for all workers at this step: any worker's ``stop``, ``should_stop``
        or signal counts for all. Returns ``(stop, should_stop, signal to stop on or None)``."""
        if self.solo:
            return stop, should_stop, received
        term, interrupt, stop, should = self.sum(
            [received == signal.SIGTERM, received == signal.SIGINT, stop, should_stop])
        received = signal.SIGTERM if term else signal.SIGINT if interrupt else None
        return bool(stop), bool(should), received

    def gather(self, values) -> np.ndarray:
        """Every replica's copy of the float vector ``values``: shape ``[replicas, len(values)]``."""
        return self._gather(tf.constant(list(values), tf.float32)).numpy()
