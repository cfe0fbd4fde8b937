"""The fit the experiment-tracking logger tests share: two epochs of a DataModule, logging every
two steps, with the loggers and callbacks given."""

import kerastrainer as kt
from kerastrainer.data import ArrayDataModule
from tests.helpers import BoringModule, regression_data


def logged_fit(tmp_path, module=None, *, loggers, epochs=2, callbacks=(), ckpt_path=None):
    trainer = kt.Trainer(default_root_dir=str(tmp_path), max_epochs=epochs, logger=loggers,
                         log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks))
    x, y = regression_data(32)
    trainer.fit(module or BoringModule(), datamodule=ArrayDataModule(x, y, batch_size=8, val_split=0.25),
                ckpt_path=ckpt_path)
    return trainer
