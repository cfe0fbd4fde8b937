"""Checkpoints are untrusted input: a crafted file runs nothing and touches nothing outside its run.

Each crafted file is a real checkpoint rewritten with ``write_checkpoint`` (so its checksum is
valid: the checksum detects damage, it authenticates nothing).
"""

import os
import sys

import numpy as np
import pytest

import kerastrainer as kt
from kerastrainer.checkpoint_io import read_checkpoint, write_checkpoint
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _saved(tmp_path):
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
    path = tmp_path / "real.ckpt"
    trainer.save_checkpoint(path)
    return path


def _crafted(tmp_path, class_name, hparams):
    tree = read_checkpoint(_saved(tmp_path))
    tree["module"]["class"] = class_name
    tree["module"]["hparams"] = hparams
    path = tmp_path / "crafted.ckpt"
    write_checkpoint(str(path), tree)
    return path


EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

import kerastrainer as kt


class Evil(kt.TrainModule):
    pass
"""


@pytest.mark.parametrize(("class_name", "hparams"), [
    ("os.system", {"command": "touch {marker}"}),
    ("subprocess.run", {"args": "touch {marker}", "shell": True}),
    ("builtins.exec", {"source": "open({marker!r}, 'w').write('ran')"}),
])
@pytest.mark.parametrize("opt_in", [{}, {"safe_mode": False}])
def test_a_file_naming_a_callable_runs_nothing(tmp_path, class_name, hparams, opt_in):
    marker = tmp_path / "ran"
    filled = {k: v.format(marker=str(marker)) if isinstance(v, str) else v for k, v in hparams.items()}
    path = _crafted(tmp_path, class_name, filled)
    with pytest.raises(ValueError, match=rf"^.*names the class '{class_name}', which is not"):
        kt.TrainModule.load_from_checkpoint(path, **opt_in)
    assert not marker.exists()


def test_a_module_beside_the_file_is_not_imported_unless_the_caller_trusts_it(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_mod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evil_mod", raising=False)
    path = _crafted(tmp_path, "evil_mod.Evil", {})
    with pytest.raises(ValueError, match=r"^.*'evil_mod\.Evil'.* safe_mode=False"):
        kt.TrainModule.load_from_checkpoint(path)
    assert not marker.exists()
    assert "evil_mod" not in sys.modules
    # Loading with a class of one's own never looks at the file's class name.
    assert isinstance(BoringModule.load_from_checkpoint(path), BoringModule)
    assert "evil_mod" not in sys.modules
    # Resuming and evaluating read weights and state only.
    quiet_trainer(max_epochs=2).fit(BoringModule(), train_data=regression_data(16), batch_size=8,
                                    ckpt_path=path)
    quiet_trainer().validate(BoringModule(), data=regression_data(16), batch_size=8, ckpt_path=path)
    assert not marker.exists()
    assert "evil_mod" not in sys.modules


TRUSTED_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

from tests.helpers import BoringModule


class Trusted(BoringModule):
    pass
"""


def test_safe_mode_false_imports_the_module_the_file_names(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "trusted_mod.py").write_text(TRUSTED_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "trusted_mod", raising=False)
    tree = read_checkpoint(_saved(tmp_path))
    tree["module"]["class"] = "trusted_mod.Trusted"
    write_checkpoint(str(tmp_path / "trusted.ckpt"), tree)
    loaded = kt.TrainModule.load_from_checkpoint(tmp_path / "trusted.ckpt", safe_mode=False)
    assert type(loaded).__name__ == "Trusted"
    assert marker.exists()
    # Imported now, the class is found again without the opt-in.
    assert type(kt.TrainModule.load_from_checkpoint(tmp_path / "trusted.ckpt")).__name__ == "Trusted"


def test_an_imported_train_module_class_is_found_without_importing_anything(tmp_path):
    loaded = kt.TrainModule.load_from_checkpoint(_saved(tmp_path))
    assert type(loaded) is BoringModule


def test_a_file_naming_a_class_that_is_no_train_module_is_refused_with_what_it_names(tmp_path):
    path = _crafted(tmp_path, "collections.OrderedDict", {})
    with pytest.raises(ValueError, match=r"^kt\.TrainModule\.load_from_checkpoint\(.*crafted\.ckpt'\) "
                                         r"refuses: the file names the class 'collections\.OrderedDict'"):
        kt.TrainModule.load_from_checkpoint(path, safe_mode=False)


def _fit_with_checkpoints(tmp_path, epochs, **fit):
    callback = kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=1, save_last=True)
    trainer = quiet_trainer(max_epochs=epochs, callbacks=[callback], logger=kt.loggers.CSVLogger(tmp_path))
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8, **fit)
    return callback


@pytest.mark.parametrize("book", ["recent", "best_k_models"])
def test_a_restored_book_naming_a_file_elsewhere_never_deletes_it(tmp_path, book):
    outside = tmp_path / "precious.txt"
    outside.write_text("a user's file")
    last = _fit_with_checkpoints(tmp_path, 1).last_model_path
    tree = read_checkpoint(last)
    for state in tree["callbacks"].values():
        if "recent" in state:
            state["dirpath"] = None
            if book == "recent":
                state["recent"] = [str(outside)] + state["recent"]
            else:
                state["best_k_models"] = [[str(outside), -1.0]] + state["best_k_models"]
                state["best_model_path"] = str(outside)
    write_checkpoint(last, tree)
    with pytest.warns(UserWarning, match=r"outside its folder .* neither use nor delete: \[.*precious\.txt"):
        callback = _fit_with_checkpoints(tmp_path, 3, ckpt_path=last)
    assert outside.read_text() == "a user's file"
    assert str(outside) not in callback.best_k_models
    assert callback.best_model_path != str(outside)


@pytest.mark.parametrize("version", ["../../outside", "/abs/elsewhere", "a/b", "..", 3.5])
def test_a_logger_version_is_one_folder_name(tmp_path, version):
    error = TypeError if not isinstance(version, str) else ValueError
    with pytest.raises(error, match=rf"^CSVLogger: `version` must be .* Received: version={version!r}"):
        kt.loggers.CSVLogger(tmp_path, version=version)


@pytest.mark.parametrize("name", ["../up", "/abs", "x/y"])
def test_a_logger_name_is_one_folder_name(tmp_path, name):
    with pytest.raises(ValueError, match=rf"^CSVLogger: `name` must be a single folder name.* Received: name={name!r}"):
        kt.loggers.CSVLogger(tmp_path, name=name)


def test_a_checkpoint_whose_logger_version_climbs_out_is_refused_before_anything_is_written(tmp_path):
    last = _fit_with_checkpoints(tmp_path / "run", 1).last_model_path
    tree = read_checkpoint(last)
    assert tree["loggers"]
    for state in tree["loggers"]:
        state["version"] = "../../outside"
    write_checkpoint(last, tree)
    with pytest.raises(ValueError, match=r"^CSVLogger \(restored from a checkpoint\): `version` .* "
                                         r"Received: version='\.\./\.\./outside'"):
        _fit_with_checkpoints(tmp_path / "run", 3, ckpt_path=last)
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "run" / "outside").exists()


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "random 4 KiB":
        start = len(data) // 3
        data[start:start + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    else:  # 64 bytes flipped at this fraction of the file
        start = int(len(data) * how)
        data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path.write_bytes(bytes(data))


DAMAGES = [0.05, 0.1, 0.3, 0.9, "random 4 KiB"]


@pytest.mark.parametrize("how", DAMAGES)
def test_every_damaged_file_is_named_as_damaged(tmp_path, how):
    path = _saved(tmp_path)
    _damage(path, how)
    with pytest.raises(ValueError, match=rf"^Checkpoint '{path}' (cannot be read: the file is damaged|"
                                         r"is corrupted)"):
        BoringModule.load_from_checkpoint(path)
    with pytest.raises(ValueError, match=rf"^Checkpoint '{path}' (cannot be read: the file is damaged|"
                                         r"is corrupted)"):
        quiet_trainer().validate(BoringModule(), data=regression_data(16), batch_size=8, ckpt_path=path)


def test_last_falls_back_to_the_newest_readable_last_checkpoint(tmp_path):
    folder = tmp_path / "ckpts"
    callback = kt.callbacks.ModelCheckpoint(dirpath=folder, save_top_k=-1, save_last=True,
                                            filename="{epoch}")
    trainer = quiet_trainer(max_epochs=2, callbacks=[callback])
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
    older = folder / "last-old.ckpt"
    older.write_bytes((folder / "epoch=0.ckpt").read_bytes())  # an older last checkpoint that reads
    os.utime(older, (1, 1))
    _damage(folder / "last.ckpt", 0.3)
    resumed = quiet_trainer(max_epochs=3, callbacks=[kt.callbacks.ModelCheckpoint(dirpath=folder)])
    with pytest.warns(UserWarning, match=r'ckpt_path="last": Checkpoint .*last\.ckpt.* (damaged|corrupted).* '
                                         r"Trying the next newest"):
        resumed.fit(BoringModule(), train_data=regression_data(16), batch_size=8, ckpt_path="last")
    assert resumed.global_step == 6  # from epoch 0's end (2 steps), then epochs 1 and 2
