"""A model whose only loss is `add_loss`: the Keras guide's "endpoint layer", trained unchanged.

The layer takes the targets and the logits, adds the loss with `self.add_loss(...)` and returns the
predictions; the targets are one of the model's inputs, so the data is a dict with no `y`. Keras
trains it with `compile(optimizer=...)` and no loss; `kt.TrainModule.from_keras(model,
optimizer=...)` with no loss does the same: the `add_loss` terms are the whole loss. The script
trains it both ways from the same weights and prints both losses.

Run: python examples/endpoint_layer.py --epochs 3
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerastrainer as kt  # noqa: E402


class LogisticEndpoint(keras.layers.Layer):
    """Adds the binary cross-entropy of ``(targets, logits)`` as the model's loss."""

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def call(self, targets, logits):
        self.add_loss(self.loss_fn(targets, logits))
        return keras.ops.sigmoid(logits)


def endpoint_model() -> keras.Model:
    inputs = keras.Input(shape=(3,), name="inputs")
    targets = keras.Input(shape=(10,), name="targets")
    logits = keras.layers.Dense(10)(inputs)
    predictions = LogisticEndpoint(name="predictions")(targets, logits)
    return keras.Model(inputs=[inputs, targets], outputs=predictions)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    inputs = rng.random((256, 3)).astype("float32")
    data = {"inputs": inputs, "targets": (inputs @ rng.random((3, 10)) > 0.8).astype("float32")}
    keras.utils.set_random_seed(0)
    model = endpoint_model()
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=keras.optimizers.SGD(0.5))  # Keras: no loss, the layer adds it
    history = twin.fit(data, batch_size=32, epochs=args.epochs, shuffle=False, verbose=0)
    module = kt.TrainModule.from_keras(model, optimizer=keras.optimizers.SGD(0.5))  # no loss either
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, data, batch_size=32, shuffle=False)
    ours = trainer.history["loss"]
    theirs = history.history["loss"]
    print("kerastrainer loss per epoch:", " ".join(f"{value:.4f}" for value in ours))
    print("Model.fit loss per epoch:   ", " ".join(f"{value:.4f}" for value in theirs))
    print(f"same as Model.fit: {np.allclose(ours, theirs, rtol=1e-5)}")
    return {"ours": ours, "theirs": theirs}


if __name__ == "__main__":
    main()
