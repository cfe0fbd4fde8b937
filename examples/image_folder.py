"""The course notes' 11 steps end to end, from a folder of images.

On first run it writes scikit-learn's digits as PNG files into a class-per-folder tree in a cache
directory (not the repository), then trains a small conv TrainModule from that folder with
augmentation, keeps the best checkpoint by val_acc, stops early on overfitting, reloads the best
checkpoint and prints the test accuracy.

Run: python examples/image_folder.py [--epochs 15] [--cache-dir ~/.cache/kerastrainer]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402


def write_digits_tree(root: str, rows: int | None = None) -> str:
    """Writes digits as 8x8 grayscale PNGs: <root>/train/<digit>/<i>.png and <root>/test/..."""
    if os.path.isdir(os.path.join(root, "test", "9")):
        return root
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))[:rows]
    split = int(len(order) * 0.8)
    for part, indices in (("train", order[:split]), ("test", order[split:])):
        for i in indices:
            folder = os.path.join(root, part, str(y[i]))
            os.makedirs(folder, exist_ok=True)
            pixels = (x[i].reshape(8, 8, 1) * 255 / 16).astype("uint8")
            tf.io.write_file(os.path.join(folder, f"{i}.png"), tf.io.encode_png(pixels))
    return root


class ConvNet(kt.TrainModule):
    """Step 4: a subclassed model."""

    def __init__(self, filters=32, lr=3e-3):
        super().__init__()
        self.save_hyperparameters()
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")
        self.pool = keras.layers.MaxPooling2D()
        self.flatten = keras.layers.Flatten()
        self.out = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.out(self.flatten(self.pool(self.conv(x))))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(self.hparams.lr)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--rows", type=int, default=None, help="use only this many images")
    parser.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                            "kerastrainer"))
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    root = write_digits_tree(os.path.join(args.cache_dir, f"digits-png-{args.rows or 'all'}"),
                             args.rows)
    data = kt.data.ImageFolder(                               # steps 1, 2, 3 and 8
        os.path.join(root, "train"), test_root=os.path.join(root, "test"), image_size=(8, 8),
        color_mode="grayscale", batch_size=32, val_split=0.2, seed=0,
        augment=[keras.layers.RandomRotation(0.03), keras.layers.RandomZoom(0.1)])
    best = kt.callbacks.ModelCheckpoint(monitor="val_acc", mode="max")          # step 11
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False,    # steps 5-7, 9, 10
                         callbacks=[best, kt.callbacks.EarlyStopping(monitor="val_loss", patience=3)])
    trainer.fit(ConvNet(), datamodule=data)
    reloaded = ConvNet.load_from_checkpoint(best.best_model_path)
    accuracy = trainer.test(reloaded, datamodule=data)["test_acc"]
    print(f"Best checkpoint: {best.best_model_path}")
    print(f"Test accuracy of the best checkpoint: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
