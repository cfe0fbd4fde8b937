"""The ``strategy`` flag: which ``tf.distribute.Strategy`` a Trainer runs under."""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

#: Seconds a collective may wait for its peers before the job fails (rather than hangs). Longer
#: than a first trace + compile and a checkpoint save.
COLLECTIVE_TIMEOUT_SECONDS = 600.0


def cluster_size() -> int:
    """Tasks named in ``TF_CONFIG`` (1 without one)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return sum(len(tasks) for tasks in config.get("cluster", {}).values()) or 1


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the strategy ``name`` names (see ``Trainer(strategy=...)``)."""
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
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def replicas(strategy) -> int:
    return strategy.num_replicas_in_sync


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


class Agreement:
    """Sums (or gathers) small vectors over every replica of every worker (one collective each).

    Under MultiWorkerMirrored the workers must take the same decisions at the same steps (stop on a
    signal, early stopping, ``max_time``) and read device values at the same points, or one of
    them waits forever in a collective the others never join. The Trainer calls this at chunk ends,
    which are at the same steps on every worker.
    """

    def __init__(self, strategy) -> None:
        self.strategy = strategy

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

    def gather(self, values) -> np.ndarray:
        """Every replica's copy of the float vector ``values``: shape ``[replicas, len(values)]``."""
        return self._gather(tf.constant(list(values), tf.float32)).numpy()
