"""Graceful SIGTERM/SIGINT: the first signal is recorded and served once what is being saved is saved."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kerastrainer.checkpoint_io import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent

# what each script below starts with: a run folder from the command line
HEADER = """
import os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from pathlib import Path
import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data

root = Path(sys.argv[1])

def run(callback, max_epochs, **flags):  # a fit that saves last.ckpt in root/ckpts
    trainer = quiet_trainer(default_root_dir=root, max_epochs=max_epochs, callbacks=[
        kt.callbacks.ModelCheckpoint(dirpath=root / "ckpts", save_last=True), callback], **flags)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
"""


def _run(script, folder):
    """Runs ``script`` in a Python process of its own, with ``folder`` as its run folder."""
    return subprocess.run([sys.executable, "-c", script, str(folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


SIGNAL_AT_THE_END = HEADER + """
class TermAtTheEnd(kt.Callback):
    def on_train_end(self, trainer, module):
        os.kill(os.getpid(), signal.SIGTERM)  # while the epoch's checkpoint may still be written
        print("signalled", flush=True)

run(TermAtTheEnd(), max_epochs=2)
print("returned", flush=True)
"""


@pytest.mark.slow
def test_a_signal_after_training_waits_for_the_last_checkpoint_then_exits_as_asked(tmp_path):
    done = _run(SIGNAL_AT_THE_END, tmp_path)
    assert done.returncode == 143, done.stderr[-2000:]
    assert "signalled" in done.stdout and "returned" not in done.stdout
    assert read_checkpoint(tmp_path / "ckpts" / "last.ckpt")["trainer"]["global_step"] == 4
    assert not list((tmp_path / "ckpts").glob(".*.tmp-*"))


TERM_ON_A_FULL_DISK = HEADER + """
import errno

class FillThenTerm(kt.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch != 1:
            return
        trainer.checkpoint_writer.wait()  # epoch 0's files are in place
        with open(root / "filler", "wb", buffering=0) as filler:  # then the disk fills up
            try:
                while True:
                    filler.write(b"x" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
        os.kill(os.getpid(), signal.SIGTERM)

run(FillThenTerm(), max_epochs=3)
"""


@pytest.mark.slow
def test_a_signal_on_a_full_disk_says_the_checkpoint_failed_and_the_last_one_is_intact(small_disk):
    done = _run(TERM_ON_A_FULL_DISK, small_disk)
    assert done.returncode == 143, done.stderr[-2000:]
    last = small_disk / "ckpts" / "last.ckpt"
    assert re.search(rf"kerastrainer: a checkpoint write failed as the run exits: OSError: \[Errno 28\] "
                     rf"Could not write the checkpoint '{re.escape(str(last))}': No space left on device\. "
                     r"Nothing was replaced: the earlier files .* are intact", done.stderr), done.stderr[-2000:]
    assert read_checkpoint(last)["trainer"]["global_step"] == 2  # epoch 0's
    assert not list((small_disk / "ckpts").glob(".*.tmp-*"))


INTERRUPT_MID_RUN = HEADER + """
class CtrlC(kt.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch_idx):
        if trainer.current_epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

run(CtrlC(), max_epochs=3, steps_per_execution=1)
"""


@pytest.mark.slow
def test_a_ctrl_c_says_where_the_run_stopped_and_how_to_resume(tmp_path):
    done = _run(INTERRUPT_MID_RUN, tmp_path)
    assert done.returncode == 130, done.stderr[-2000:]
    assert re.search(r"Interrupted by SIGINT at epoch 1, global step 3: the run is saved to "
                     r".*last\.ckpt\. Resume with fit\(\.\.\., ckpt_path='last'\)", done.stderr), done.stderr[-2000:]
    assert read_checkpoint(tmp_path / "ckpts" / "last.ckpt")["trainer"]["global_step"] == 3
