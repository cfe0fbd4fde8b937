"""ImageFolder: a DataModule over a class-per-folder image tree (load, resize, split, augment)."""

from __future__ import annotations

from typing import Any

import os

import keras
import tensorflow as tf

from kerastrainer.data.datamodule import DataModule

_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_MAGIC = {".png": (b"\x89PNG",), ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",),
          ".gif": (b"GIF8",), ".bmp": (b"BM",)}


def _check_tree(root: str, argument: str) -> list[str]:
    """Validates ``root`` and returns its class names; every error names the path."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"ImageFolder: {argument} {root!r} is not a folder. Received: "
                                f"{argument}={root!r}")
    classes = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    if not classes:
        raise ValueError(f"ImageFolder: {root!r} has no class sub-folders. Put each class's images "
                         "in its own folder: root/cat/1.png, root/dog/2.png, ...")
    if len(classes) < 2:
        raise ValueError(f"ImageFolder: {root!r} has one class folder ({classes[0]!r}); a classifier "
                         "needs at least two.")
    for name in classes:
        folder = os.path.join(root, name)
        files = [f for f in sorted(os.listdir(folder)) if os.path.isfile(os.path.join(folder, f))]
        images = [f for f in files if f.lower().endswith(_EXTENSIONS)]
        if not images:
            raise ValueError(f"ImageFolder: {folder!r} holds no readable images (found: "
                             f"{files[:5] or 'nothing'}). Supported: {', '.join(_EXTENSIONS)}.")
        for image in images:  # a header check: cheap, and names the file before training starts
            path = os.path.join(folder, image)
            with open(path, "rb") as handle:
                head = handle.read(8)
            if not head.startswith(_MAGIC[os.path.splitext(image)[1].lower()]):
                raise ValueError(f"ImageFolder: {path!r} is not a valid "
                                 f"{os.path.splitext(image)[1]} image (unreadable header).")
    return classes


class ImageFolder(DataModule):
    """Images in ``root/<class>/<file>``, split into training and validation by seed.

    Built on ``keras.utils.image_dataset_from_directory``: class names come from the sub-folders,
    and the split is made over one seeded shuffle of the file list, so no file is in both subsets.
    Pixels are rescaled to [0, 1] on the fly; ``augment`` (Keras preprocessing layers such as
    ``RandomFlip``, ``RandomRotation``, ``RandomZoom``) runs in the ``tf.data`` pipeline on training
    batches only, after ``cache()``, so every epoch sees new variations; everything is prefetched.
    The augmentation runs one batch after the other (its random draws in a fixed order), so a run
    seeded with ``kt.seed_everything`` augments the same way again.

    Args:
        root: the training folder (split into training and validation).
        image_size: ``(height, width)`` the images are resized to.
        batch_size: the batch size.
        val_split: fraction of ``root``'s images for validation, in (0, 1).
        seed: the split and shuffle seed.
        color_mode: ``"rgb"``, ``"grayscale"`` or ``"rgba"``.
        augment: a Keras layer, or a list of them, applied to training batches.
        cache: cache decoded images in memory after the first epoch.
        test_root: an optional folder with the same classes, for ``test`` and ``predict``.

    Attributes:
        class_names: the sub-folder names, in label order (set by ``setup``).
        train_files, val_files: the files of each subset.

    Raises:
        FileNotFoundError: ``root`` (or ``test_root``) does not exist.
        ValueError: an empty folder, a single class, an unreadable image (named), or a bad split.

    Examples:
        >>> dm = ImageFolder("photos", image_size=(64, 64),  # doctest: +SKIP
        ...                  augment=[keras.layers.RandomFlip("horizontal")])
    """

    def __init__(self, root: str | os.PathLike, *, image_size: tuple[int, int], batch_size: int = 32,
                 val_split: float = 0.2, seed: int = 0, color_mode: str = "rgb",
                 augment: Any = None, cache: bool = True,
                 test_root: str | os.PathLike | None = None) -> None:
        if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or \
                not 0 < val_split < 1:
            raise ValueError(f"ImageFolder: `val_split` must be in (0, 1). Received: val_split={val_split!r}")
        self.save_hyperparameters(ignore="augment")
        self.root = os.fspath(root)
        self.test_root = os.fspath(test_root) if test_root is not None else None
        self.image_size = tuple(image_size)
        self.batch_size = batch_size
        self.val_split = float(val_split)
        self.seed = seed
        self.color_mode = color_mode
        if augment is not None and not isinstance(augment, keras.layers.Layer):
            augment = keras.Sequential(list(augment))
        self.augment = augment
        self.cache = cache
        self.class_names: list[str] | None = None
        self.train_files: list[str] = []
        self.val_files: list[str] = []
        self._train = self._val = self._test = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names or [])

    def _load(self, root, **kwargs):
        return keras.utils.image_dataset_from_directory(
            root, image_size=self.image_size, batch_size=self.batch_size, color_mode=self.color_mode,
            seed=self.seed, label_mode="int", verbose=False, **kwargs)

    def _finish(self, dataset, *, training):
        dataset = dataset.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
        if self.cache:
            dataset = dataset.cache()
        if training and self.augment is not None:
            augment = self.augment
            # Not in parallel: parallel calls would take the random draws in any order.
            dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and self._train is None:
            self.class_names = _check_tree(self.root, "root")
            train, val = self._load(self.root, validation_split=self.val_split, subset="both",
                                    shuffle=True)
            self.train_files = list(train.file_paths)
            self.val_files = list(val.file_paths)
            self._train = self._finish(train, training=True)
            self._val = self._finish(val, training=False)
        if stage in ("test", "predict") and self._test is None and self.test_root is not None:
            classes = _check_tree(self.test_root, "test_root")
            if self.class_names is not None and classes != self.class_names:
                raise ValueError(f"ImageFolder: test_root classes {classes} differ from root classes "
                                 f"{self.class_names}.")
            self.class_names = classes
            self._test = self._finish(self._load(self.test_root, shuffle=False), training=False)

    def train_dataset(self) -> Any:
        return self._train

    def val_dataset(self) -> Any:
        return self._val

    def test_dataset(self) -> Any:
        return self._test

    def predict_dataset(self) -> Any:
        return None if self._test is None else self._test.map(lambda x, y: x)

    def state_dict(self) -> dict:
        return {"class_names": list(self.class_names or []), "seed": self.seed,
                "val_split": self.val_split, "image_size": list(self.image_size)}

    def load_state_dict(self, state_dict: dict) -> None:
        if self.class_names is not None and list(state_dict["class_names"]) != self.class_names:
            raise ValueError(f"ImageFolder: the checkpoint's classes {state_dict['class_names']} differ "
                             f"from {self.root!r}'s {self.class_names}.")
        if int(state_dict["seed"]) != self.seed or float(state_dict["val_split"]) != self.val_split:
            raise ValueError("ImageFolder: resume with the seed and val_split of the checkpoint "
                             f"(seed={state_dict['seed']}, val_split={state_dict['val_split']}) so the "
                             "split is the same.")
