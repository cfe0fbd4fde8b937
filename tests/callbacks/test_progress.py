import io

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


def test_live_bar_shows_epoch_step_and_metrics():
    stream = io.StringIO()
    _fit_with_bar(Console(file=stream, force_terminal=True, width=200), epochs=2)
    text = stream.getvalue()
    assert "Epoch 2/2" in text and "12/12" in text
    assert "val_loss" in text and "acc" in text
    assert "Test metric" in text


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
