"""Training curves as a picture: loss and every metric, training vs validation, by epoch."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
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


def plot_metrics(run: Any, path: str | os.PathLike | None = None, *,
                 keys: list[str] | None = None) -> str:
    """Draws the curves of a run to a PNG; in a Jupyter notebook, shows it under the cell too.

    One panel per metric (``loss``, ``acc``, ...), with the training values and the ``val_*``
    values on the same axes, by epoch (whole-number ticks). Throughput (``*_per_sec``) and
    learning rates (``lr-*``) are left out unless ``keys`` names them. When ``EarlyStopping``
    restored the best weights, a dashed line marks that epoch.

    Args:
        run: a `Trainer` that logged with a ``CSVLogger`` (the default loggers do), a run folder
            holding ``metrics.csv``, or the CSV file itself.
        path: the PNG to write (default: ``curves.png`` beside the CSV).
        keys: the panels to draw, by their training names (``["loss", "acc"]``); default: every
            metric.

    Returns:
        The PNG's path.

    Raises:
        ModuleNotFoundError: matplotlib is missing (``pip install kerastrainer[plot]``).
        FileNotFoundError: no ``metrics.csv`` there.
        ValueError: the CSV has no epoch rows yet, or ``keys`` names none of its values.
        TypeError: ``run`` is neither a Trainer nor a path.

    Examples:
        >>> plot_metrics("kt_logs/version_0")  # doctest: +SKIP
        'kt_logs/version_0/curves.png'
        >>> plot_metrics(trainer)  # doctest: +SKIP
        'kt_logs/version_0/curves.png'
    """
    plt = load_pyplot()
    figure, csv_path = metrics_figure(run, keys=keys)
    path = os.fspath(path) if path else os.path.join(os.path.dirname(os.path.abspath(csv_path)),
                                                      "curves.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    show_in_notebook(path)
    return path


def show_in_notebook(path: str) -> None:
    """Displays the PNG at ``path`` under the running cell when this process is a Jupyter kernel
    (a script or a terminal IPython only gets the path)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return
    from IPython.display import Image, display

    display(Image(filename=path))


def run_folder(run: Any) -> str:
    """The folder or CSV file of ``run``: a path as given, a Trainer's ``log_dir``.

    Raises:
        TypeError: neither.
    """
    if isinstance(run, (str, os.PathLike)):
        return os.fspath(run)
    log_dir = getattr(run, "log_dir", None)
    if isinstance(log_dir, str):
        return log_dir
    raise TypeError("plot_metrics needs a Trainer, a run folder holding metrics.csv or the CSV file. "
                    f"Received: {type(run).__name__}")


#: Logged values that are not metrics of the model, left out of the default panels.
NOT_METRICS = re.compile(r"(_per_sec$|^lr(-|$))")


def metrics_figure(run: Any, *, keys: list[str] | None = None) -> tuple[Any, str]:
    """The figure `plot_metrics` draws, and the CSV it read: ``(figure, csv_path)``."""
    from matplotlib.ticker import MaxNLocator

    plt = load_pyplot()
    source = run_folder(run)
    csv_path = os.path.join(source, "metrics.csv") if os.path.isdir(source) else source
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"No metrics.csv at {csv_path!r}. Pass a run folder written by "
                                "CSVLogger (e.g. kt_logs/version_0) or the CSV file.")
    rows = read_epoch_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path!r} has no epoch rows yet: train for at least one epoch.")
    restored = _restored_epoch(os.path.dirname(os.path.abspath(csv_path)))
    logged = sorted({k for row in rows for k in row} - {"epoch", "step"})
    bases = sorted({_base(k) for k in logged}, key=lambda k: (k != "loss", k))
    if keys is None:
        bases = [base for base in bases if not NOT_METRICS.search(base)] or bases
    else:
        unknown = sorted(set(keys) - set(bases))
        if unknown:
            raise ValueError(f"plot_metrics: `keys` names {unknown}, which {csv_path!r} does not "
                             f"hold. Its values are {bases}. Received: keys={keys!r}")
        bases = list(keys)
    columns = min(3, len(bases))
    figure, axes = plt.subplots(math.ceil(len(bases) / columns), columns,
                                figsize=(5 * columns, 3.6 * math.ceil(len(bases) / columns)),
                                squeeze=False)
    for axis, base in zip(axes.flat, bases):
        for key, label in [(base, "train")] + _validation_keys(logged, base):
            points = [(row["epoch"] + 1, row[key]) for row in rows if key in row]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=label)
        if restored is not None:
            axis.axvline(restored + 1, linestyle="--", color="grey",
                         label=f"restored best (epoch={restored} in files)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.set_title(base)
        # The axis counts epochs trained, as the bar does; files and logs name epochs from 0.
        axis.set_xlabel("epochs trained")
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
