import h5py
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer


def _data(rows=100):
    rng = np.random.default_rng(0)
    x = rng.normal(loc=5.0, scale=2.0, size=(rows, 3)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) * 0.1).astype("float32")


def test_split_sizes_and_seeded_shuffle():
    x, y = _data()
    dm = kt.data.ArrayDataModule(x, y, val_split=0.2, test_split=0.1, seed=3)
    dm.setup("fit")
    train, val, test = dm.train_dataset(), dm.val_dataset(), dm.test_dataset()
    assert (len(train[0]), len(val[0]), len(test[0])) == (70, 20, 10)
    rows = np.concatenate([train[0], val[0], test[0]])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))  # a partition: nothing lost or shared
    assert not np.array_equal(train[0], x[30:])  # shuffled before the split
    again = kt.data.ArrayDataModule(x, y, val_split=0.2, test_split=0.1, seed=3)
    again.setup("fit")
    np.testing.assert_array_equal(again.val_dataset()[0], val[0])


def test_statistics_come_from_the_training_split_only():
    x, y = _data()
    dm = kt.data.ArrayDataModule(x, y, val_split=0.3, test_split=0.2, standardize=True, seed=1)
    dm.setup("fit")
    train_x = dm.train_dataset()[0]
    np.testing.assert_allclose(train_x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train_x.std(axis=0), 1, atol=1e-4)
    order = np.random.default_rng(1).permutation(100)
    poisoned = x.copy()
    poisoned[order[:50]] *= 1000.0  # every val and test row (the first 50 of the permutation)
    other = kt.data.ArrayDataModule(poisoned, y, val_split=0.3, test_split=0.2, standardize=True, seed=1)
    other.setup("fit")
    np.testing.assert_array_equal(other.mean, dm.mean)
    np.testing.assert_array_equal(other.std, dm.std)


def test_statistics_travel_with_the_checkpoint(tmp_path):
    x, y = _data()
    dm = kt.data.ArrayDataModule(x, y, standardize=True, batch_size=10)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), datamodule=dm)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    with h5py.File(tmp_path / "c.ckpt", "r") as f:
        np.testing.assert_allclose(f["datamodule/mean"][()], dm.mean)
        assert f["datamodule_hparams"].attrs["standardize"] == "true"
    assert dict(dm.hparams) == {"batch_size": 10, "val_split": 0.2, "test_split": 0.0,
                                "shuffle_before_split": True, "standardize": True, "seed": 0}
    resumed = kt.data.ArrayDataModule(x, y, standardize=True, batch_size=10)
    quiet_trainer(max_epochs=2).fit(BoringModule(), datamodule=resumed, ckpt_path=str(tmp_path / "c.ckpt"))
    np.testing.assert_array_equal(resumed.std, dm.std)
    assert trainer.num_training_batches == 8


def test_state_from_other_data_is_rejected():
    x, y = _data()
    dm = kt.data.ArrayDataModule(x, y, seed=1)
    with pytest.raises(ValueError, match="made with 100 rows and seed 2"):
        dm.load_state_dict(kt.data.ArrayDataModule(x, y, seed=2).state_dict())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"val_split": 0.0}, r"`val_split` must be a fraction in \(0, 1\). Received: val_split=0.0"),
    ({"val_split": 1.2}, r"Received: val_split=1.2"),
    ({"test_split": -0.1}, r"`test_split` must be a fraction in \[0, 1\). Received: test_split=-0.1"),
    ({"val_split": 0.5, "test_split": 0.5}, r"must leave rows for training"),
])
def test_bad_fractions(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.data.ArrayDataModule(*_data(), **kwargs)


def test_mismatched_lengths():
    x, y = _data()
    with pytest.raises(ValueError, match=r"Received len\(x\)=100 and len\(y\)=99"):
        kt.data.ArrayDataModule(x, y[:99])


def test_transform_needs_statistics():
    dm = kt.data.ArrayDataModule(*_data(), standardize=True)
    with pytest.raises(RuntimeError, match="call setup"):
        dm.transform(np.zeros((1, 3)))
