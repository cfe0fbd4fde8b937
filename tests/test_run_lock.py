"""One writer per run folder: a second fit into a folder another live fit writes is refused."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kerastrainer as kt
from kerastrainer.run_lock import LOCK_NAME
from tests.helpers import BoringModule, quiet_trainer, regression_data

ROOT = Path(__file__).resolve().parent.parent


def _trainer(root, **flags):
    callback = kt.callbacks.ModelCheckpoint(save_last=True)
    return quiet_trainer(default_root_dir=root, logger=kt.loggers.CSVLogger(root), callbacks=[callback],
                         **flags)


def _first_run(tmp_path):
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
    return Path(trainer.log_dir)


def _lock(folder, host, pid):
    (folder / LOCK_NAME).write_text(json.dumps({"host": host, "pid": pid}))


def test_a_fit_holds_the_lock_and_gives_it_back(tmp_path):
    seen = []

    class Look(kt.Callback):
        def on_train_start(self, trainer, module):
            seen.append(json.loads((Path(trainer.log_dir) / LOCK_NAME).read_text()))

    trainer = quiet_trainer(logger=kt.loggers.CSVLogger(tmp_path), callbacks=[Look()], max_epochs=1)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
    assert seen == [{"host": socket.gethostname(), "pid": os.getpid()}]
    assert not (Path(trainer.log_dir) / LOCK_NAME).exists()


def test_a_live_holder_on_this_host_is_refused_with_its_name(tmp_path):
    folder = _first_run(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(folder, socket.gethostname(), holder.pid)
        with pytest.raises(RuntimeError, match=rf"^Another fit writes to the run folder .*version_0.* held by "
                                               rf"pid {holder.pid} on host '{socket.gethostname()}'"):
            _trainer(tmp_path, max_epochs=2).fit(BoringModule(), train_data=regression_data(16), batch_size=8,
                                                 ckpt_path="last")
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == holder.pid  # left alone
    finally:
        holder.kill()
        holder.wait()


def test_another_hosts_lock_is_refused(tmp_path):
    folder = _first_run(tmp_path)
    _lock(folder, "another-host.example", 12345)
    with pytest.raises(RuntimeError, match=r"held by pid 12345 on host 'another-host\.example'"):
        _trainer(tmp_path, max_epochs=2).fit(BoringModule(), train_data=regression_data(16), batch_size=8,
                                             ckpt_path="last")


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    folder = _first_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(folder, socket.gethostname(), dead.pid)
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8, ckpt_path="last")
    assert trainer.current_epoch == 1
    assert Path(trainer.log_dir) == folder
    assert not (folder / LOCK_NAME).exists()


HOLDER = """
import sys, time
from pathlib import Path
import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data

root = Path(sys.argv[1])

class Hold(kt.Callback):
    def on_train_start(self, trainer, module):
        (root / "started").write_text("1")
        deadline = time.monotonic() + 60
        while not (root / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

trainer = quiet_trainer(default_root_dir=root, logger=kt.loggers.CSVLogger(root),
                        callbacks=[kt.callbacks.ModelCheckpoint(save_last=True), Hold()], max_epochs=2)
trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8, ckpt_path="last")
"""


@pytest.mark.slow
def test_two_resumes_of_one_checkpoint_at_once_one_is_refused(tmp_path):
    folder = _first_run(tmp_path)
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert (tmp_path / "started").exists(), first.communicate()[0][-2000:]
        with pytest.raises(RuntimeError, match=rf"held by pid {first.pid} on host"):
            _trainer(tmp_path, max_epochs=2).fit(BoringModule(), train_data=regression_data(16), batch_size=8,
                                                 ckpt_path="last")
    finally:
        (tmp_path / "go").write_text("1")
        output = first.communicate(timeout=120)[0]
    assert first.returncode == 0, output[-2000:]
    rows = (folder / "metrics.csv").read_text().splitlines()[1:]
    assert rows and len(rows) == len(set(rows))  # one writer: no row written twice
    assert [p.name for p in (folder / "checkpoints").iterdir() if "-v" in p.name] == []  # nor a file twice

