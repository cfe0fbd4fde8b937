"""The ``strategy`` flag: which ``tf.distribute.Strategy`` a Trainer runs under."""

from __future__ import annotations

import json
import os

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
