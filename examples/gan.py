"""Manual optimization: a small GAN on 2-D points with two optimizers.

`automatic_optimization = False` and a dict of named optimizers: `training_step` runs its own
tapes, one update of the discriminator and one of the generator per batch, inside the compiled step.
As in keras-io's GAN, `call(z)` takes latent vectors and nothing is built by hand: the Trainer traces
`training_step` once on the data's spec, which builds the discriminator and both optimizers.
The real data is a Gaussian blob around (2, -1); the generator starts near (0, 0) and moves there.

Run: python examples/gan.py --epochs 40
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402

CENTER = np.array([2.0, -1.0], dtype="float32")


class GAN(kt.TrainModule):
    automatic_optimization = False

    def __init__(self, latent=2, lr=5e-3):
        super().__init__()
        self.save_hyperparameters()
        self.generator = keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                           keras.layers.Dense(2)])
        self.discriminator = keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                               keras.layers.Dense(1)])
        self.noise = keras.random.SeedGenerator(0)  # its state is saved in checkpoints

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def configure_optimizer(self):
        # Each optimizer is built on the variables training_step first applies it to.
        return {"generator": keras.optimizers.Adam(self.hparams.lr),
                "discriminator": keras.optimizers.Adam(self.hparams.lr)}

    def training_step(self, batch, batch_idx):
        optimizers = self.optimizers()
        real = batch
        z = keras.random.normal((tf.shape(real)[0], self.hparams.latent), seed=self.noise)
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(self.generator(z, training=True), training=True)
            d_loss = bce(tf.ones_like(real_logits), real_logits) + \
                bce(tf.zeros_like(fake_logits), fake_logits)
        variables = self.discriminator.trainable_variables
        optimizers["discriminator"].apply_gradients(zip(tape.gradient(d_loss, variables), variables))
        with tf.GradientTape() as tape:
            fake_logits = self.discriminator(self.generator(z, training=True), training=True)
            g_loss = bce(tf.ones_like(fake_logits), fake_logits)
        variables = self.generator.trainable_variables
        optimizers["generator"].apply_gradients(zip(tape.gradient(g_loss, variables), variables))
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, on_step=False, on_epoch=True,
                      prog_bar=True)


def generated_center(module, n=500) -> np.ndarray:
    z = np.random.default_rng(1).normal(size=(n, module.hparams.latent)).astype("float32")
    return module.predict(z, verbose=0).mean(axis=0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    real = (np.random.default_rng(0).normal(size=(512, 2)) * 0.3 + CENTER).astype("float32")
    module = GAN()
    before = float(np.linalg.norm(generated_center(module) - CENTER))
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False)
    trainer.fit(module, train_data=real, batch_size=64)
    after = float(np.linalg.norm(generated_center(module) - CENTER))
    print(f"distance of the generated mean to the data mean: {before:.3f} -> {after:.3f}")
    return {"before": before, "after": after, "history": trainer.history}


if __name__ == "__main__":
    main()
