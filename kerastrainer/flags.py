"""The Trainer's flags: declared once (type, default, meaning) and checked: each bad value names the
flag, shows what was received and says the fix."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import numbers
import os
from typing import Any

from kerastrainer.foreign_names import TRAINER_NAMES, shown
from kerastrainer.precision import normalize_precision


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def int_at_least(name: str, value, minimum: int, meaning: str = "") -> int:
    """Checks an integer flag with a lower bound."""
    hint = f" ({meaning})" if meaning else ""
    if not _is_int(value):
        raise TypeError(f"`{name}` must be an integer >= {minimum}{hint}. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{hint}. Received: {name}={value!r}")
    return int(value)


def optional_int(name: str, value, minimum: int, meaning: str = "") -> int | None:
    return None if value is None else int_at_least(name, value, minimum, meaning)


def batches_or_fraction(name: str, value) -> int | float:
    """An int >= 0 (a number of batches) or a float in [0, 1] (a fraction of the data)."""
    if _is_int(value):
        if value < 0:
            raise ValueError(
                f"`{name}` must be an int >= 0 (batches) or a float in [0, 1] (fraction). "
                f"Received: {name}={value!r}"
            )
        return int(value)
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"`{name}` must be an int >= 0 (batches) or a float in [0, 1] (fraction). "
                f"Received: {name}={value!r}"
            )
        return value
    raise TypeError(
        f"`{name}` must be an int >= 0 (batches) or a float in [0, 1] (fraction). "
        f"Received: {name}={value!r}"
    )


def check_val_check_interval(value) -> int | float:
    """An int >= 1 (every N training batches) or a float in (0, 1] (fraction of an epoch)."""
    if _is_int(value) and value >= 1:
        return int(value)
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return value
    error = TypeError if not isinstance(value, (int, float)) or isinstance(value, bool) else ValueError
    raise error(
        "`val_check_interval` must be an int >= 1 (every N training batches) or a float in (0, 1] "
        f"(fraction of an epoch). Received: val_check_interval={value!r}"
    )


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def boolean_or_auto(name: str, value):
    if value == "auto":
        return value
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True, False or 'auto'. Received: {name}={value!r}")
    return value


def check_fast_dev_run(value) -> int:
    """``True`` means 1 batch, an int n means n batches, ``False``/0 is off."""
    if isinstance(value, bool):
        return int(value)
    return int_at_least("fast_dev_run", value, 0, "True, False or a number of batches")


def max_time_seconds(value, name: str = "max_time") -> float | None:
    """Seconds, a ``timedelta``, a dict of ``timedelta`` fields, or ``"DD:HH:MM:SS"`` (``name``: the
    argument the errors name)."""
    if value is None:
        return None
    fix = (f"`{name}` must be seconds (a positive number), a datetime.timedelta, a dict such as "
           "{'hours': 1}, or a 'DD:HH:MM:SS' string.")
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, numbers.Real):
            seconds = float(value)
        elif isinstance(value, datetime.timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, dict):
            seconds = datetime.timedelta(**value).total_seconds()
        elif isinstance(value, str):
            days, hours, minutes, secs = (int(part) for part in value.split(":"))
            seconds = datetime.timedelta(days=days, hours=hours, minutes=minutes,
                                         seconds=secs).total_seconds()
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise (ValueError if isinstance(value, (str, dict)) else TypeError)(
            f"{fix} Received: {name}={value!r}"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{fix} Received: {name}={value!r}")
    return seconds


def folder(name: str, value) -> str:
    """A folder path (``str`` or ``os.PathLike``; ``None``: the working directory), not a file."""
    if value is None or value == "":
        return os.getcwd()
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError(f"`{name}` must be a folder path (a str or pathlib.Path) or None. "
                        f"Received: {name}={value!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`{name}` must be a folder, but {path!r} is a file. Choose another path. "
                         f"Received: {name}={value!r}")
    return path


def clip_value(value) -> float | None:
    """``None`` or a positive number (``gradient_clip_val``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`gradient_clip_val` must be a positive number or None. "
                        f"Received: gradient_clip_val={value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`gradient_clip_val` must be a positive, finite number or None. "
                         f"Received: gradient_clip_val={value!r}")
    return float(value)


def one_of(name: str, value, choices: tuple):
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}. "
                         f"Received: {name}={value!r}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class TrainerFlags:
    """The flags of [`Trainer`][kerastrainer.Trainer], all keyword-only, checked when it is built.

    Attributes:
        max_epochs: epochs to run; ``-1``: no limit. Default 1000 (no limit with ``max_steps``).
        min_epochs: ignore ``should_stop`` (early stopping) before this many epochs.
        max_steps: optimizer steps to run; ``-1``: no limit.
        max_time: stop after this long: seconds, a ``timedelta``, a dict or ``"DD:HH:MM:SS"``.
        limit_train_batches: batches per epoch: an int, or a float fraction of the data.
        limit_val_batches: the same per validation run (``0`` disables validation).
        limit_test_batches: the same for ``test``.
        limit_predict_batches: the same for ``predict``.
        val_check_interval: validate every N training batches (int) or fraction of an epoch.
        check_val_every_n_epoch: validate in every n-th epoch only.
        num_sanity_val_steps: validation batches run before training (``-1``: all).
        fast_dev_run: run ``n`` batches (``True``: 1) of every stage once, as a smoke test.
        overfit_batches: train and validate on this many training batches (unshuffled).
        steps_per_execution: steps per compiled call (batch hooks fire once per call).
            ``"auto"`` sizes calls to about 50 ms from measured step time, ending them where
            loggers, validation and step-interval callbacks look; one batch per call when a
            callback that is not ``chunk_aware`` (or the module) overrides a batch hook.
        jit_compile: compile the steps with XLA. ``"auto"``: on a GPU whenever the step
            compiles; on a CPU when it measured faster on the run's first batches (runs shorter
            than 500 batches, ``deterministic`` and ``detect_anomaly`` runs stay plain). Never under
            several replicas. ``trainer.step_tuner.reason`` says what was chosen and why.
        run_eagerly: run the steps as plain Python (debugging; slow).
        deterministic: seed (the last ``kt.seed_everything`` seed, else 0) and enable TensorFlow's
            op determinism, so two runs give bitwise equal weights. TensorFlow keeps it on for the
            rest of the process (it has no public way to turn it off).
        accumulate_grad_batches: sum the gradients of this many batches and apply their mean
            once; ``global_step`` counts optimizer steps. Leftover batches are applied at the
            epoch's end.
        gradient_clip_val: clip gradients to this global norm (or value), inside the optimizer's
            ``apply``: after accumulation and loss-scale unscaling.
        gradient_clip_algorithm: ``"norm"`` (global norm) or ``"value"``.
        detect_anomaly: check in the compiled step that the loss and every gradient are finite;
            the run stops with an error naming the step and the value.
        precision: ``"32"``, ``"mixed_float16"`` (with dynamic loss scaling) or
            ``"mixed_bfloat16"``; the Keras dtype policy is set for the run and restored after it.
        strategy: ``"auto"``, ``"one_device"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy``. Batch sizes are global: each replica gets its share.
        callbacks: a callback or a list; ``kt.Callback`` and ``keras.callbacks.Callback`` both work.
        logger: ``True`` for a CSV logger (plus TensorBoard when the ``tensorboard`` package is
            installed) in ``<default_root_dir>/kt_logs/version_N``; ``False`` for none; a
            [`Logger`][kerastrainer.loggers.Logger] or a list of them.
        log_every_n_steps: how often loggers receive (and read from the device) training values.
        enable_progress_bar: add a [`RichProgressBar`][kerastrainer.callbacks.RichProgressBar] if none is given.
        enable_checkpointing: add a [`ModelCheckpoint`][kerastrainer.callbacks.ModelCheckpoint] if none is
            given (the latest epoch, in ``<log_dir>/checkpoints``; ``max_overhead=0.1``: epochs too
            short to be worth a file each are saved every few epochs, the last one always).
        async_checkpointing: during a fit, write checkpoint files on a background thread: the loop
            copies the state to host memory and goes on; the next save and the end of the run wait
            for the file (and raise its error, if any). ``False`` writes each file before going on.
        save_input_state: keep the training ``tf.data`` iterator's state (its position and what its
            shuffle and prefetch buffers hold) in checkpoints, so a fit resumed mid-epoch goes on
            from there at once instead of reading and dropping the epoch's earlier batches. A large
            shuffle buffer makes the files that much larger; ``False`` replays instead. Pipelines
            TensorFlow cannot save (Python generators, stateful random ops) are always replayed.
        enable_model_summary: print the model summary when fit starts.
        default_root_dir: where logs and checkpoints go (default: the working directory).
        profiler: ``None``, ``"simple"`` (time per hook and phase, a table at the end), ``"tf"``
            (plus a ``tf.profiler`` trace of a few steps) or a profiler instance.

    Raises:
        TypeError, ValueError: a flag of the wrong type or range; the message names the flag,
            shows the value received and says what it must be.
    """

    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    max_time: Any = None
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    limit_predict_batches: int | float = 1.0
    val_check_interval: int | float = 1.0
    check_val_every_n_epoch: int = 1
    num_sanity_val_steps: int = 2
    fast_dev_run: bool | int = False
    overfit_batches: int | float = 0.0
    steps_per_execution: int | str = "auto"
    jit_compile: bool | str = "auto"
    run_eagerly: bool = False
    deterministic: bool = False
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"
    detect_anomaly: bool = False
    precision: str = "32"
    strategy: Any = "auto"
    callbacks: Any = None
    logger: Any = True
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True
    enable_checkpointing: bool = True
    async_checkpointing: bool = True
    save_input_state: bool = True
    enable_model_summary: bool = True
    default_root_dir: str | None = None
    profiler: Any = None

    def __post_init__(self) -> None:
        """Checks every flag and normalises it (``fast_dev_run`` applied), once: the flags are a
        frozen value from here on."""
        for name, value in checked(self).items():
            object.__setattr__(self, name, value)  # the one write of a frozen dataclass's field


#: The flags' names, in their order (what ``Trainer(...)`` accepts).
FLAG_NAMES = tuple(field.name for field in dataclasses.fields(TrainerFlags))


def check_positional(args: tuple) -> None:
    """Refuses positional arguments to ``Trainer``: every flag is a keyword.

    Raises:
        TypeError: any positional argument, with the flag it most likely meant.
    """
    if not args:
        return
    first = args[0]
    if isinstance(first, int) and not isinstance(first, bool):
        hint = f"Did you mean Trainer(max_epochs={first!r})? "
    elif isinstance(first, (list, tuple)):
        hint = "Did you mean Trainer(callbacks=[...])? "
    else:
        hint = ""
    received = ", ".join(repr(arg) for arg in args)
    raise TypeError(f"Trainer takes keyword arguments only. {hint}The flags are listed in "
                    f"kerastrainer.flags.TrainerFlags. Received positional arguments: {received}")


def check_names(given: dict) -> None:
    """Refuses a keyword that is not a flag, naming the closest flag.

    Raises:
        TypeError: an unknown keyword.
    """
    for name, value in given.items():
        if name not in FLAG_NAMES:
            close = difflib.get_close_matches(name, FLAG_NAMES, n=1)
            hint = f"Did you mean `{close[0]}`? " if close else ""
            if name in TRAINER_NAMES:  # Keras's and Lightning's names
                hint = f"Use {TRAINER_NAMES[name]} instead. "
            raise TypeError(f"Trainer has no flag `{name}`. {hint}The flags are listed in "
                            f"kerastrainer.flags.TrainerFlags. Received: {name}={shown(value)}")


def checked(flags: TrainerFlags) -> dict[str, Any]:
    """The flags' checked, normalised values (``fast_dev_run`` applied), by name."""
    values = {name: getattr(flags, name) for name in FLAG_NAMES}
    values["max_steps"] = int_at_least("max_steps", values["max_steps"], -1, "-1 means no limit")
    if values["max_epochs"] is None:
        values["max_epochs"] = 1000 if values["max_steps"] == -1 else -1
    values["max_epochs"] = int_at_least("max_epochs", values["max_epochs"], -1, "-1 means no limit")
    values["min_epochs"] = optional_int("min_epochs", values["min_epochs"], 0) or 0
    if 0 <= values["max_epochs"] < values["min_epochs"]:
        raise ValueError(
            f"min_epochs is more than max_epochs, and the fit always stops at max_epochs. Lower "
            f"min_epochs or raise max_epochs. Received: min_epochs={values['min_epochs']}, "
            f"max_epochs={values['max_epochs']}")
    values["max_time"] = max_time_seconds(values["max_time"])
    for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                 "limit_predict_batches", "overfit_batches"):
        values[name] = batches_or_fraction(name, values[name])
    values["val_check_interval"] = check_val_check_interval(values["val_check_interval"])
    values["check_val_every_n_epoch"] = int_at_least("check_val_every_n_epoch",
                                                     values["check_val_every_n_epoch"], 1)
    values["num_sanity_val_steps"] = int_at_least("num_sanity_val_steps", values["num_sanity_val_steps"],
                                                  -1, "-1 runs all validation batches")
    values["fast_dev_run"] = check_fast_dev_run(values["fast_dev_run"])
    if values["steps_per_execution"] != "auto":
        values["steps_per_execution"] = int_at_least("steps_per_execution", values["steps_per_execution"],
                                                     1, "or 'auto'")
    values["jit_compile"] = boolean_or_auto("jit_compile", values["jit_compile"])
    values["accumulate_grad_batches"] = int_at_least("accumulate_grad_batches",
                                                     values["accumulate_grad_batches"], 1)
    values["gradient_clip_val"] = clip_value(values["gradient_clip_val"])
    values["gradient_clip_algorithm"] = one_of("gradient_clip_algorithm",
                                               values["gradient_clip_algorithm"], ("norm", "value"))
    values["precision"] = normalize_precision(values["precision"])
    values["log_every_n_steps"] = int_at_least("log_every_n_steps", values["log_every_n_steps"], 1)
    for name in ("run_eagerly", "deterministic", "detect_anomaly", "enable_progress_bar",
                 "enable_checkpointing", "async_checkpointing", "save_input_state", "enable_model_summary"):
        values[name] = boolean(name, values[name])
    values["default_root_dir"] = folder("default_root_dir", values["default_root_dir"])
    if values["fast_dev_run"]:
        values.update(fast_dev_run_flags(values["fast_dev_run"]))
    return values


def fast_dev_run_flags(batches: int) -> dict[str, Any]:
    """What ``fast_dev_run=n`` sets: ``n`` batches of every stage, once, as a smoke test."""
    return {"max_epochs": 1, "max_steps": batches, "num_sanity_val_steps": 0, "val_check_interval": 1.0,
            "limit_train_batches": batches, "limit_val_batches": batches,
            "limit_test_batches": batches, "limit_predict_batches": batches}
