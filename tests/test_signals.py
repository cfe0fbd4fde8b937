"""Graceful SIGTERM/SIGINT: the first signal is recorded and served once what is being saved is saved."""

import subprocess
import sys
from pathlib import Path

import pytest

from kerastrainer.checkpoint_io import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent


SIGNAL_AT_THE_END = """
import os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from pathlib import Path
import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data

root = Path(sys.argv[1])

class TermAtTheEnd(kt.Callback):
    def on_train_end(self, trainer, module):
        os.kill(os.getpid(), signal.SIGTERM)  # while the epoch's checkpoint may still be written
        print("signalled", flush=True)

trainer = quiet_trainer(default_root_dir=root, max_epochs=2, callbacks=[
    kt.callbacks.ModelCheckpoint(dirpath=root / "ckpts", save_last=True), TermAtTheEnd()])
trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
print("returned", flush=True)
"""


@pytest.mark.slow
def test_a_signal_after_training_waits_for_the_last_checkpoint_then_exits_as_asked(tmp_path):
    done = subprocess.run([sys.executable, "-c", SIGNAL_AT_THE_END, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr[-2000:]
    assert "signalled" in done.stdout and "returned" not in done.stdout
    assert read_checkpoint(tmp_path / "ckpts" / "last.ckpt")["trainer"]["global_step"] == 4
    assert not list((tmp_path / "ckpts").glob(".*.tmp-*"))
