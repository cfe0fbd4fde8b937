import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringClassifier, quiet_trainer


def _tree(root, classes=("a", "b", "c"), per_class=10):
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(80 * label, 10, size=(6, 6, 1)), 0, 255).astype("uint8")
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(pixels))
    return root


def test_split_classes_rescaling_and_training(tmp_path):
    dm = kt.data.ImageFolder(_tree(tmp_path / "imgs"), image_size=(6, 6), color_mode="grayscale",
                             batch_size=4, val_split=0.3, seed=1)
    trainer = quiet_trainer(max_epochs=8)
    trainer.fit(BoringClassifier(), datamodule=dm)
    assert dm.class_names == ["a", "b", "c"]
    assert len(dm.train_files) == 21 and len(dm.val_files) == 9
    assert not set(dm.train_files) & set(dm.val_files)  # no leakage
    x, _ = next(iter(dm.train_dataset()))
    assert float(tf.reduce_max(x)) <= 1.0 and x.shape[1:] == (6, 6, 1)
    assert trainer.callback_metrics["val_acc"] > 0.8


def test_augmentation_runs_on_training_batches_only(tmp_path):
    class Blank(keras.layers.Layer):
        def call(self, x, training=False):
            return x * 0.0 if training else x

    dm = kt.data.ImageFolder(_tree(tmp_path / "imgs"), image_size=(6, 6), color_mode="grayscale",
                             augment=[Blank()], batch_size=30, val_split=0.5)
    dm.setup("fit")
    train_x, _ = next(iter(dm.train_dataset()))
    val_x, _ = next(iter(dm.val_dataset()))
    assert float(tf.reduce_max(train_x)) == 0.0 and float(tf.reduce_max(val_x)) > 0.0


def test_test_root_feeds_test_and_predict(tmp_path):
    dm = kt.data.ImageFolder(_tree(tmp_path / "train"), test_root=_tree(tmp_path / "test", per_class=2),
                             image_size=(6, 6), color_mode="grayscale", batch_size=4)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringClassifier(), datamodule=dm)
    assert "test_acc" in trainer.test(datamodule=dm)
    assert trainer.predict(datamodule=dm).shape == (6, 3)


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*missing' is not a folder"):
        kt.data.ImageFolder(tmp_path / "missing", image_size=(6, 6)).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty' has no class sub-folders"):
        kt.data.ImageFolder(tmp_path / "empty", image_size=(6, 6)).setup("fit")
    _tree(tmp_path / "one", classes=("only",))
    with pytest.raises(ValueError, match=r"has one class folder \('only'\)"):
        kt.data.ImageFolder(tmp_path / "one", image_size=(6, 6)).setup("fit")
    bad = _tree(tmp_path / "bad")
    (bad / "b" / "broken.png").write_text("this is not a png")
    with pytest.raises(ValueError, match=r"'.*bad/b/broken.png' is not a valid .png image"):
        kt.data.ImageFolder(bad, image_size=(6, 6)).setup("fit")
    odd = _tree(tmp_path / "odd")
    for f in os.listdir(odd / "c"):
        os.rename(odd / "c" / f, odd / "c" / (f + ".tiff"))
    with pytest.raises(ValueError, match=r"'.*odd/c' holds no readable images"):
        kt.data.ImageFolder(odd, image_size=(6, 6)).setup("fit")


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.2])
def test_bad_val_split(tmp_path, split):
    with pytest.raises(ValueError, match=rf"Received: val_split={split}"):
        kt.data.ImageFolder(tmp_path, image_size=(6, 6), val_split=split)


def test_augmentation_is_reproducible_under_seed_everything(tmp_path):
    root = _tree(tmp_path / "imgs", per_class=20)

    def first_batches():
        kt.seed_everything(3)
        dm = kt.data.ImageFolder(root, image_size=(6, 6), color_mode="grayscale", batch_size=8,
                                 augment=[keras.layers.RandomFlip("horizontal"),
                                          keras.layers.RandomRotation(0.2)])
        dm.setup("fit")
        return [x.numpy() for x, _ in dm.train_dataset().take(6)]

    for a, b in zip(first_batches(), first_batches()):
        np.testing.assert_array_equal(a, b)
