"""Export for serving: a TensorFlow SavedModel written next to its destination, then moved in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import shutil
import tempfile

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule


def export_saved_model(module: TrainModule, directory: str | os.PathLike) -> str:
    """Writes ``module`` as a TF SavedModel (for TF Serving) with a ``serve`` endpoint.

    The endpoint's input signature is the one the Trainer recorded from the data (or the one stored
    in the checkpoint the module came from), with a free batch dimension. The export goes to a
    temporary folder beside ``directory`` and replaces it only when complete.

    Args:
        module: a built ``TrainModule``.
        directory: the SavedModel folder to create (an existing one is replaced).

    Returns:
        The folder's path.

    Raises:
        ValueError: the module has no recorded input spec (it was never run by a Trainer nor
            loaded from a checkpoint).

    Examples:
        >>> export_saved_model(module, "exported/digits")  # doctest: +SKIP
        >>> served = tf.saved_model.load("exported/digits")  # doctest: +SKIP
        >>> served.serve(x)  # doctest: +SKIP
    """
    spec = module.input_signature
    if spec is None:
        raise ValueError(
            f"{type(module).__name__} has no recorded input spec. Run it with a Trainer (fit, validate, "
            "test or predict) or load it with load_from_checkpoint before exporting."
        )
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.tmp-", dir=parent)
    try:
        target = os.path.join(staging, "model")
        module.export(target, format="tf_saved_model", input_signature=[spec], verbose=False)
        if os.path.exists(directory):
            old = directory + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(target, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
