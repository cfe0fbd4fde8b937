import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def test_batches_and_samples_per_second_are_logged_at_the_logging_interval(tmp_path):
    monitor = kt.callbacks.ThroughputMonitor(batch_size=4)
    trainer = quiet_trainer(max_epochs=2, log_every_n_steps=4, callbacks=[monitor],
                            logger=kt.loggers.CSVLogger(str(tmp_path)))
    trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=4)  # 8 batches an epoch
    metrics = trainer.callback_metrics
    assert metrics["batches_per_sec"] > 0 and metrics["epoch_batches_per_sec"] > 0
    assert metrics["samples_per_sec"] == pytest.approx(4 * metrics["batches_per_sec"])
    assert metrics["epoch_samples_per_sec"] == pytest.approx(4 * metrics["epoch_batches_per_sec"])
    rows = (tmp_path / "kt_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [row.split(",")[header.index("step")] for row in rows[1:]
             if row.split(",")[header.index("batches_per_sec")]]
    assert sorted(set(steps), key=int) == ["4", "8", "12", "16"]  # step rows (and epoch rows)


def test_without_a_batch_size_only_batches_are_counted():
    trainer = quiet_trainer(max_epochs=1, callbacks=[kt.callbacks.ThroughputMonitor()])
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=4)
    assert "epoch_batches_per_sec" in trainer.callback_metrics
    assert "epoch_samples_per_sec" not in trainer.callback_metrics


def test_a_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer or None. Received: batch_size=0"):
        kt.callbacks.ThroughputMonitor(batch_size=0)


class LogsInTest(BoringModule):
    def on_test_epoch_end(self):
        self.log("test_marker", 1.0)


@pytest.mark.parametrize("entry", ["validate", "test"])
def test_training_throughput_is_not_a_result_of_validate_or_test(entry, capsys):
    trainer = quiet_trainer(max_epochs=1, enable_progress_bar=True,
                            callbacks=[kt.callbacks.ThroughputMonitor(batch_size=4)])
    module = LogsInTest()
    trainer.fit(module, train_data=regression_data(16), batch_size=4)
    capsys.readouterr()
    results = getattr(trainer, entry)(module, data=regression_data(8), batch_size=4)
    prefix = "val_" if entry == "validate" else "test_"
    assert results and all(key.startswith(prefix) for key in results)
    assert ("test_marker" in results) == (entry == "test")  # a hook of this run is one of its results
    printed = capsys.readouterr().out
    assert f"{prefix}loss" in printed and "per_sec" not in printed
