"""Training curves as a picture: loss and every metric, training vs validation, by epoch."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from typing import Any


def read_epoch_rows(csv_path: str) -> list[dict]:
    """The epoch rows (those with an ``epoch`` value) of a CSVLogger file, as floats."""
    rows = []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch", "") == "":
                continue
            rows.append({k: float(v) for k, v in row.items() if v != ""})
    return rows


def load_pyplot(what: str = "plot_metrics"):
    """matplotlib's pyplot on the file-only Agg backend.

    Raises:
        ModuleNotFoundError: matplotlib is missing; the message names ``what`` needs it and the extra.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ModuleNotFoundError(
            f"{what} needs matplotlib. Install it with `pip install kerastrainer[plot]`.") from error
    return plt


RESTORED_FILE = "restored_best.json"  # written by EarlyStopping(restore_best_weights=True)


def plot_metrics(run_dir_or_csv: str | os.PathLike, path: str | os.PathLike | None = None) -> str:
    """Draws the curves of a run to a PNG.

    One panel per metric (``loss``, ``acc``, ...), with the training values and the ``val_*``
    values on the same axes, by epoch (whole-number ticks). When ``EarlyStopping`` restored the
    best weights, a dashed line marks that epoch.

    Args:
        run_dir_or_csv: a run folder holding ``metrics.csv``, or the CSV file itself.
        path: the PNG to write (default: ``curves.png`` beside the CSV).

    Returns:
        The PNG's path.

    Raises:
        ModuleNotFoundError: matplotlib is missing (``pip install kerastrainer[plot]``).
        FileNotFoundError: no ``metrics.csv`` there.
        ValueError: the CSV has no epoch rows yet.

    Examples:
        >>> plot_metrics("kt_logs/version_0")  # doctest: +SKIP
        'kt_logs/version_0/curves.png'
    """
    plt = load_pyplot()
    figure, csv_path = metrics_figure(run_dir_or_csv)
    path = os.fspath(path) if path else os.path.join(os.path.dirname(os.path.abspath(csv_path)),
                                                      "curves.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def metrics_figure(run_dir_or_csv: str | os.PathLike) -> tuple[Any, str]:
    """The figure `plot_metrics` draws, and the CSV it read: ``(figure, csv_path)``."""
    from matplotlib.ticker import MaxNLocator

    plt = load_pyplot()
    source = os.fspath(run_dir_or_csv)
    csv_path = os.path.join(source, "metrics.csv") if os.path.isdir(source) else source
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"No metrics.csv at {csv_path!r}. Pass a run folder written by "
                                "CSVLogger (e.g. kt_logs/version_0) or the CSV file.")
    rows = read_epoch_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path!r} has no epoch rows yet: train for at least one epoch.")
    restored = _restored_epoch(os.path.dirname(os.path.abspath(csv_path)))
    keys = sorted({k for row in rows for k in row} - {"epoch", "step"})
    bases = sorted({_base(k) for k in keys}, key=lambda k: (k != "loss", k))
    columns = min(3, len(bases))
    figure, axes = plt.subplots(math.ceil(len(bases) / columns), columns,
                                figsize=(5 * columns, 3.6 * math.ceil(len(bases) / columns)),
                                squeeze=False)
    for axis, base in zip(axes.flat, bases):
        for key, label in [(base, "train")] + _validation_keys(keys, base):
            points = [(row["epoch"] + 1, row[key]) for row in rows if key in row]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=label)
        if restored is not None:
            axis.axvline(restored + 1, linestyle="--", color="grey",
                         label=f"restored best (epoch {restored + 1})")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.set_title(base)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in list(axes.flat)[len(bases):]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure, csv_path


def _base(key: str) -> str:
    """The panel of a key: ``val_acc`` and ``val_acc/dataloader_idx_1`` are drawn with ``acc``."""
    key = re.sub(r"/dataloader_idx_\d+$", "", key)
    return key[4:] if key.startswith("val_") else key


def _validation_keys(keys, base: str) -> list:
    """``[(key, label)]`` of the validation curves of a panel: one, or one per validation dataset."""
    found = [k for k in keys if k.startswith("val_") and _base(k) == base]
    return [(k, "validation" if "/" not in k else f"validation set {k.rsplit('_', 1)[-1]}") for k in found]


def _restored_epoch(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, RESTORED_FILE)) as saved:
            epoch = json.load(saved).get("epoch")
    except (OSError, ValueError):
        return None
    return epoch if isinstance(epoch, int) else None
