"""An existing functional Keras model, trained by a Trainer without subclassing.

`kt.TrainModule.from_keras(model, loss=..., optimizer=..., metrics=...)` takes what `compile` takes.
The model is keras-io's "ticket" shape: one input, a department (3 classes) and a priority (a
number). The loss of each output is weighted as `loss_weights` says; metrics are named as Keras
names them (`department_accuracy`, `val_priority_mae`). The checkpoint rebuilds the model alone.

Run: python examples/functional.py --epochs 20
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerastrainer as kt  # noqa: E402


def ticket_model() -> keras.Model:
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    department = keras.layers.Dense(3, name="department")(hidden)
    priority = keras.layers.Dense(1, name="priority")(hidden)
    return keras.Model(inputs, {"department": department, "priority": priority})


def tickets(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype("float32")
    department = np.argmax(x[:, :3], axis=1)  # learnable from the features
    priority = (x[:, 3:4] * 2.0 + 1.0).astype("float32")
    return x, {"department": department, "priority": priority}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    module = kt.TrainModule.from_keras(
        ticket_model(), optimizer="adam",
        loss={"department": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              "priority": "mse"},
        loss_weights={"department": 1.0, "priority": 0.5},
        metrics={"department": ["accuracy"], "priority": ["mae"]})
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False, logger=False,
                         enable_checkpointing=False)
    trainer.fit(module, train_data=tickets(512), val_data=tickets(128, seed=1), batch_size=32)
    path = os.path.join(tempfile.mkdtemp(), "ticket.ckpt")
    trainer.save_checkpoint(path)
    loaded = kt.TrainModule.load_from_checkpoint(path)  # the model rebuilt from the checkpoint
    x, _ = tickets(4, seed=2)
    same = np.allclose(loaded(x)["priority"], module(x)["priority"], atol=1e-6)
    metrics = trainer.callback_metrics
    print(f"val_department_accuracy: {metrics['val_department_accuracy']:.3f} "
          f"val_priority_mae: {metrics['val_priority_mae']:.3f} checkpoint rebuilds it: {same}")
    return metrics


if __name__ == "__main__":
    main()
