import io
import re

import pytest
from rich.console import Console

import kerastrainer as kt
from tests.helpers import BoringClassifier, BoringModule, classification_data, regression_data


def _fit_with_bar(console, epochs=3):
    bar = kt.callbacks.RichProgressBar(console=console, refresh_rate=0)
    trainer = kt.Trainer(max_epochs=epochs, callbacks=[bar], enable_model_summary=False)
    x, y = classification_data(rows=48)
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=(x[:16], y[:16]), batch_size=4)
    trainer.test(data=(x[:16], y[:16]))
    return trainer


def test_plain_output_is_one_line_per_epoch_not_per_step():
    stream = io.StringIO()
    _fit_with_bar(Console(file=stream, force_terminal=False, width=200))
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("Epoch")]
    assert len(lines) == 3  # 12 steps per epoch, still one line each
    assert lines[0].startswith("Epoch 1/3") and "loss:" in lines[0] and "val_acc:" in lines[0]
    assert "test_acc" in stream.getvalue()


def test_plain_line_gives_epoch_time_a_person_can_read_and_time_per_step():
    # Issue 33: a small model's epoch took 40 ms and the line said "0.0s".
    stream = io.StringIO()
    _fit_with_bar(Console(file=stream, force_terminal=False, width=200), epochs=1)
    line = next(line for line in stream.getvalue().splitlines() if line.startswith("Epoch"))
    assert " - 0.0s - " not in line
    assert re.match(r"^Epoch 1/1 - (\d+ms|\d+\.\ds) - \d+ms/step - loss: ", line), line


@pytest.mark.parametrize("seconds, expected", [
    (0.0004, "0ms"), (0.045, "45ms"), (0.9994, "999ms"), (3.21, "3.2s"),
    (125.0, "2m05s"), (3725.0, "1h02m"),
])
def test_format_duration(seconds, expected):
    from kerastrainer.callbacks.progress_bar import format_duration
    assert format_duration(seconds) == expected


@pytest.mark.parametrize("seconds, steps, expected", [
    (0.12, 40, "3ms/step"), (5.0, 2, "2.5s/step"), (1.0, 0, ""),
])
def test_format_step_time(seconds, steps, expected):
    from kerastrainer.callbacks.progress_bar import format_step_time
    assert format_step_time(seconds, steps) == expected


def test_live_bar_shows_epoch_step_and_metrics():
    stream = io.StringIO()
    _fit_with_bar(Console(file=stream, force_terminal=True, width=200), epochs=2)
    text = stream.getvalue()
    assert "Epoch 2/2" in text and "12/12" in text
    assert "val_loss" in text and "acc" in text
    assert "Test metric" in text


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_an_80_column_terminal_shows_epoch_batches_speed_eta_and_metrics():
    stream = io.StringIO()
    _fit_with_bar(Console(file=stream, force_terminal=True, width=80, color_system=None), epochs=2)
    text = ANSI.sub("", stream.getvalue())
    bars = [line for line in text.splitlines() if "Epoch 2/2" in line]
    assert bars and all(len(line) <= 80 for line in text.splitlines())
    last = bars[-1]
    assert "12/12" in last and "it/s" in last and "eta" in last  # nothing cut to "…"
    assert "…" not in last
    below = text.splitlines()[text.splitlines().index(last) + 1]
    assert "loss:" in below and "val_acc:" in below  # the metrics, wrapped to the next line


def test_a_wide_terminal_keeps_one_line_per_bar():
    stream = io.StringIO()
    _fit_with_bar(Console(file=stream, force_terminal=True, width=200, color_system=None), epochs=1)
    text = ANSI.sub("", stream.getvalue())
    assert any("Epoch 1/1" in line and "it/s" in line and "val_acc:" in line for line in text.splitlines())


def test_progress_bar_is_default_and_can_be_disabled():
    assert any(isinstance(c, kt.callbacks.RichProgressBar) for c in kt.Trainer().callbacks)
    assert not any(isinstance(c, kt.callbacks.RichProgressBar)
                   for c in kt.Trainer(enable_progress_bar=False).callbacks)


def test_model_summary_prints_when_fit_starts():
    lines = []
    summary = kt.callbacks.ModelSummary(print_fn=lambda line, **_: lines.append(line))
    trainer = kt.Trainer(max_epochs=1, callbacks=[summary], enable_progress_bar=False)
    trainer.fit(BoringModule(), train_data=regression_data(8))
    assert any("Total params" in line for line in lines)


def test_rich_model_summary_is_lightnings_name_for_the_summary(capsys):
    summary = kt.callbacks.RichModelSummary(max_depth=2)
    assert summary.expand_nested and summary.max_depth == 2
    trainer = kt.Trainer(max_epochs=1, callbacks=[summary], enable_progress_bar=False, logger=False,
                         enable_checkpointing=False)
    trainer.fit(BoringModule(), train_data=regression_data(8), batch_size=4)
    assert "Total params" in capsys.readouterr().out


def test_rich_model_summary_refuses_a_bad_depth():
    with pytest.raises(ValueError, match=r"`max_depth` must be an integer >= 1. Received: max_depth=0"):
        kt.callbacks.RichModelSummary(max_depth=0)


def test_the_live_bar_counts_each_validation_set_on_its_own():
    stream = io.StringIO()
    bar = kt.callbacks.RichProgressBar(console=Console(file=stream, force_terminal=True, width=200,
                                                       color_system=None), refresh_rate=0)
    trainer = kt.Trainer(max_epochs=1, callbacks=[bar], enable_model_summary=False, logger=False,
                         enable_checkpointing=False, num_sanity_val_steps=0)
    x, y = classification_data(rows=48)
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=[(x[:16], y[:16]), (x[:40], y[:40])],
                batch_size=8)
    text = ANSI.sub("", stream.getvalue())
    assert "Validation DataLoader 0" in text and "Validation DataLoader 1" in text  # one after the other
