"""Experiment tracking: the digit classifier logged to MLflow and to Weights & Biases at once.

Both run locally: MLflow into a folder store, W&B offline (`wandb sync <folder>` uploads it later).
Needs `pip install "kerastrainer[mlflow,wandb]"`.

Run: `python examples/tracking.py --epochs 5 --root runs`, then `mlflow ui --backend-store-uri runs/mlruns`.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 asks before using a folder
os.environ.setdefault("WANDB_SILENT", "true")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402
from digits import DigitClassifier  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--root", default="runs", help="where the runs, their stores and checkpoints go")
    args = parser.parse_args(argv)

    kt.seed_everything(0)
    train, val, _ = load_digits_splits()
    mlflow_logger = kt.loggers.MLFlowLogger("digits", run_name="mlp",
                                            tracking_uri="file:" + os.path.abspath(os.path.join(args.root, "mlruns")),
                                            log_model=True)  # the best checkpoint, once the run ends
    wandb_logger = kt.loggers.WandbLogger("digits", offline=True, log_model="all")  # every checkpoint
    checkpoint = kt.callbacks.ModelCheckpoint(monitor="val_acc", mode="max")
    trainer = kt.Trainer(default_root_dir=args.root, max_epochs=args.epochs, enable_progress_bar=False,
                         logger=[mlflow_logger, wandb_logger], callbacks=[checkpoint])
    trainer.fit(DigitClassifier(hidden=64), train_data=train, val_data=val, batch_size=64)

    client = mlflow_logger.experiment  # an mlflow.tracking.MlflowClient
    run = client.get_run(mlflow_logger.run_id)
    history = client.get_metric_history(run.info.run_id, "val_acc")
    print(f"MLflow run {run.info.run_id}: {run.info.status}, params {sorted(run.data.params)}")
    print(f"MLflow val_acc by step: {[(m.step, round(m.value, 3)) for m in history]}")
    print(f"MLflow artifacts: {[a.path for a in client.list_artifacts(run.info.run_id, 'checkpoints')]}")
    print(f"W&B offline run {wandb_logger.run_id} in {os.path.join(wandb_logger.log_dir, 'wandb')}")
    print(f"Best checkpoint: {checkpoint.best_model_path} (val_acc {checkpoint.best_model_score:.3f})")


if __name__ == "__main__":
    main()
