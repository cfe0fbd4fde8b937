"""Modules built by their own steps, as Keras's fit builds what a custom train_step uses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringModule, PythonInItsStep, quiet_trainer, regression_data


class LitAutoEncoder(kt.TrainModule):
    """Lightning's README module: `call` is the encoder; the decoder is used in the step only."""

    def __init__(self):
        super().__init__()
        self.encoder = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                                         keras.layers.Dense(3)])
        self.decoder = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                                         keras.layers.Dense(12)])

    def call(self, x, training=False):
        return self.encoder(x)

    def training_step(self, batch, batch_idx):
        x = batch
        x_hat = self.decoder(self.encoder(x, training=True), training=True)
        loss = keras.ops.mean(keras.ops.square(x_hat - x))
        self.log("train_loss", loss)
        return loss

    def configure_optimizer(self):
        return keras.optimizers.Adam(1e-2)


def _images(rows=64):
    return np.random.default_rng(0).normal(size=(rows, 12)).astype("float32")


def test_layers_only_the_step_uses_are_built_and_trained(tmp_path):
    module, x = LitAutoEncoder(), _images()
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(module, train_data=x, batch_size=16)
    assert module.decoder.built and len(module.optimizer.variables) > 4  # decoder slots included
    before = [w.copy() for w in module.decoder.get_weights()]
    trainer.fit(module, train_data=x, batch_size=16)
    assert any(not np.array_equal(a, b) for a, b in zip(before, module.decoder.get_weights()))
    trainer.save_checkpoint(tmp_path / "ae.ckpt")
    loaded = LitAutoEncoder.load_from_checkpoint(tmp_path / "ae.ckpt")
    np.testing.assert_allclose(loaded.decoder(loaded(x)), module.decoder(module(x)), atol=1e-6)


class GAN(kt.TrainModule):
    """keras-io's GAN as written there: `call(z)` takes latent vectors, and the optimizers are
    made in configure_optimizer without building them by hand."""

    automatic_optimization = False

    def __init__(self, latent=4):
        super().__init__()
        self.save_hyperparameters()
        self.generator = keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                           keras.layers.Dense(2)])
        self.discriminator = keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                               keras.layers.Dense(1)])

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def configure_optimizer(self):
        return {"g": keras.optimizers.Adam(1e-3), "d": keras.optimizers.Adam(1e-3)}

    def training_step(self, batch, batch_idx):
        real = batch
        size = tf.shape(real)[0]
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        z = tf.random.normal((size, self.hparams.latent))
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            logits = self.discriminator(tf.concat([fake, real], 0), training=True)
            labels = tf.concat([tf.zeros((size, 1)), tf.ones((size, 1))], 0)
            d_loss = bce(labels, logits)
        grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.optimizer["d"].apply_gradients(zip(grads, self.discriminator.trainable_variables))
        with tf.GradientTape() as tape:
            g_loss = bce(tf.ones((size, 1)), self.discriminator(self.generator(z, training=True)))
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.optimizer["g"].apply_gradients(zip(grads, self.generator.trainable_variables))
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, on_step=False, on_epoch=True)
        return {"loss": d_loss + g_loss}


def test_a_keras_io_gan_trains_without_hand_built_parts(tmp_path):
    points = np.random.default_rng(0).normal(3.0, 0.5, size=(128, 2)).astype("float32")
    module = GAN()
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module, train_data=points, batch_size=32)
    assert module.generator.built and module.discriminator.built
    assert module.generator.layers[0].kernel.shape == (4, 16)  # built on latents, not on points
    assert {"d_loss", "g_loss"} <= set(trainer.callback_metrics)
    assert int(module.optimizer["g"].iterations.numpy()) == 8
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    loaded = GAN.load_from_checkpoint(tmp_path / "gan.ckpt")
    z = np.ones((3, 4), "float32")
    np.testing.assert_allclose(loaded(z), module(z), atol=1e-6)


def test_a_default_step_still_builds_by_call_and_records_no_recipe():
    from tests.helpers import BoringModule, regression_data

    module = BoringModule()
    quiet_trainer(max_epochs=1).fit(module, train_data=regression_data(8))
    assert module.build_recipe is None and module.input_signature.shape.as_list() == [None, 3]


def test_an_unbatched_dataset_gets_a_batching_hint():
    x, y = regression_data(16)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match=r"^The model could not be called.*shapes \[\(3,\)\] have no "
                                         r"batch dimension.*dataset.batch\(batch_size\)"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=data)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_string_targets_are_refused_before_tracing(as_dataset):
    x, _ = regression_data(16)
    labels = np.array(["cat", "dog"] * 8)
    data = (tf.data.Dataset.from_tensor_slices((x, labels)).batch(4) if as_dataset else (x, labels))
    with pytest.raises(ValueError, match=r"^BoringModule.training_step: the targets \(y\) are strings"
                                         r".*np.unique\(y, return_inverse=True\)"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=data,
                                        batch_size=None if as_dataset else 4)


def test_text_inputs_are_allowed():
    class Texts(kt.TrainModule):
        def __init__(self):
            super().__init__()
            self.vectorize = keras.layers.TextVectorization(max_tokens=8, output_mode="count")
            self.vectorize.adapt(["a b", "c d"])
            self.out = keras.layers.Dense(1)

        def call(self, x):
            return self.out(self.vectorize(x))

        def loss(self, y_true, y_pred):
            return keras.losses.mean_squared_error(y_true, y_pred)

        def configure_optimizer(self):
            return keras.optimizers.SGD(0.01)

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Texts(), train_data=(np.array(["a b", "c d"] * 4), np.ones((8, 1))), batch_size=4)
    assert np.isfinite(trainer.callback_metrics["loss"])


def test_run_eagerly_runs_a_step_that_cannot_be_traced():
    trainer = quiet_trainer(max_epochs=1, run_eagerly=True)
    trainer.fit(PythonInItsStep(), regression_data(32), batch_size=8)
    assert trainer.global_step == 4


def test_without_run_eagerly_the_untraceable_step_is_refused_at_build():
    with pytest.raises(AttributeError, match=r"numpy"):
        quiet_trainer(max_epochs=1).fit(PythonInItsStep(), regression_data(32), batch_size=8)
