"""What goes into a training checkpoint and how it is put back.

Variables are stored by path (see `kerastrainer.variable_paths`); every other piece of state
comes from the object that owns it, through its ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import json
import os
import shutil
import tempfile
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.building import build_from_spec, rebuild_by_step
from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
from kerastrainer.checkpoint_io import flatten, nest, read_checkpoint, write_checkpoint
from kerastrainer.variable_paths import optimizer_paths, variable_paths

FORMAT = "kerastrainer.checkpoint"
FORMAT_VERSION = 2


def assign_by_path(variables: dict, saved: dict, path: str, what: str) -> None:
    """Assigns saved arrays to variables by path.

    Raises:
        ValueError: missing, unexpected or shape-mismatched paths, all listed, naming the file.
    """
    missing = sorted(set(variables) - set(saved))
    unexpected = sorted(set(saved) - set(variables))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(np.shape(saved[key]))} vs module {tuple(variables[key].shape)}"
        for key in set(variables) & set(saved)
        if tuple(np.shape(saved[key])) != tuple(variables[key].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing in the checkpoint: {missing}")
        if unexpected:
            parts.append(f"not in the module: {unexpected}")
        if mismatched:
            parts.append(f"shape mismatch: {mismatched}")
        raise ValueError(
            f"Checkpoint {path!r} does not fit this {what}: " + "; ".join(parts) + ". Load it into the "
            "module it was saved from (same layers and hyperparameters), or pass matching overrides "
            "to load_from_checkpoint."
        )
    for key, variable in variables.items():
        variable.assign(np.asarray(saved[key]).astype(variable.dtype))


def spec_to_tree(spec):
    """The input spec as plain data: ``{"shape": [None, 64], "dtype": "float32"}`` per input."""
    def encode(s):
        return {"shape": [None if d is None else int(d) for d in s.shape], "dtype": s.dtype.name}

    return tf.nest.map_structure(encode, spec)


def spec_from_tree(node):
    """The inverse of `spec_to_tree`."""
    if isinstance(node, dict) and set(node) == {"shape", "dtype"}:
        return tf.TensorSpec(node["shape"], node["dtype"])
    if isinstance(node, dict):
        return {key: spec_from_tree(value) for key, value in node.items()}
    return tuple(spec_from_tree(value) for value in node)


def json_value(value) -> tuple[Any, bool]:
    """``(value as the checkpoint holds it, whether that is its repr)``: JSON values as they are
    (NumPy arrays and numbers as lists and numbers), anything else as its repr."""
    value = value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value), True
    return value, False


def plain_hparams(hparams: dict) -> dict:
    """Hyperparameters as JSON values (`json_value`); one kept as its repr gets a warning (see
    `repr_hparams`)."""
    plain = {}
    for key, value in hparams.items():
        plain[key], as_repr = json_value(value)
        if as_repr:
            warnings.warn(f"Hyperparameter {key}={value!r} is not JSON-serialisable; the checkpoint "
                          "keeps its repr, so load_from_checkpoint needs it as an override.")
    return plain


def repr_hparams(hparams: dict) -> list:
    """The names of the hyperparameters `plain_hparams` keeps as their repr (not a value)."""
    return [key for key, value in hparams.items() if json_value(value)[1]]


def build_checkpoint(module, *, owners: dict, weights_only: bool = False,
                     datamodule=None) -> dict:
    """Assembles a checkpoint as a nested dict of arrays and JSON values.

    Args:
        module: the TrainModule (weights, optimizer, hyperparameters, input signature).
        owners: ``{group name: object}`` for every other piece of state; each object's
            ``state_dict()`` becomes that group (a list of objects: a list of their states).
            ``None`` entries are left out.
        weights_only: store only the module (no optimizer or owners): loadable, not resumable.
        datamodule: the run's DataModule, whose hyperparameters are stored too.

    Raises:
        RuntimeError: no module (nothing was run yet).
    """
    import kerastrainer

    if module is None:
        raise RuntimeError("Trainer.save_checkpoint needs a module: run fit, validate, test or predict.")

    weights = variable_paths(module)
    cls = type(module)
    tree: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"kerastrainer": kerastrainer.__version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__},
        "module": {"class": f"{cls.__module__}.{cls.__qualname__}",
                   "hparams": plain_hparams(module.hparams),
                   "hparams_as_repr": repr_hparams(module.hparams)},
        "weights": nest({path: np.asarray(var.numpy()) for path, var in weights.items()}),
    }
    if module.input_signature is not None:
        tree["module"]["input_spec"] = spec_to_tree(module.input_signature)
    if module.build_recipe is not None:  # built by tracing its own step: load the same way
        tree["module"]["build"] = {"step": module.build_recipe["step"],
                                   "batch": spec_to_tree(module.build_recipe["batch"])}
    if weights_only:
        return tree
    optimizers = module.optimizer if isinstance(module.optimizer, dict) else {"": module.optimizer}
    tree["optimizer"] = {
        (name or "default"): nest({path: np.asarray(var.numpy())
                                   for path, var in optimizer_paths(opt, weights).items()})
        for name, opt in optimizers.items() if opt is not None
    }
    for name, owner in owners.items():
        if owner is not None:
            tree[name] = ([item.state_dict() for item in owner] if isinstance(owner, list)
                          else owner.state_dict())
    if datamodule is not None and datamodule.hparams:
        tree["datamodule_hparams"] = plain_hparams(datamodule.hparams)
    return tree


def save_checkpoint_file(path, tree: dict, chief: bool) -> None:
    """Writes ``tree`` to ``path`` on the chief. Under MultiWorkerMirrored every worker saves (the
    state is read collectively); the others write to a temporary folder, removed at once."""
    if chief:
        write_checkpoint(path, tree)
        return
    scratch = tempfile.mkdtemp(prefix="kt-worker-ckpt-")
    try:
        write_checkpoint(os.path.join(scratch, os.path.basename(path)), tree)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def restore_weights(module, tree: dict, path: str) -> None:
    """Loads the checkpoint's weights into a built ``module`` (by path, all mismatches listed)."""
    if tree.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a kerastrainer checkpoint (format={tree.get('format')!r}).")
    assign_by_path(variable_paths(module), flatten(tree["weights"]), path, type(module).__name__)


def restore_training_state(module, tree: dict, path: str, *, owners: dict) -> None:
    """Puts back everything a resumed fit needs: weights, optimizer, then every owner's state.

    Args:
        module: the TrainModule, built, with its optimizer configured.
        tree: the checkpoint, as `read_checkpoint` returns it.
        path: its file, named in errors.
        owners: ``{group name: object}`` as for `build_checkpoint`; each object present in
            the checkpoint gets ``load_state_dict(its group)``.

    Raises:
        ValueError: a weights-only checkpoint, or variables that do not match.
    """
    restore_weights(module, tree, path)
    if "optimizer" not in tree:
        raise ValueError(
            f"Checkpoint {path!r} holds weights only (save_weights_only=True), so training cannot "
            "resume from it. Load the weights with YourModule.load_from_checkpoint(path) and start a "
            "new fit, or resume from a full checkpoint.")
    weights = variable_paths(module)
    optimizers = module.optimizer if isinstance(module.optimizer, dict) else {"default": module.optimizer}
    for name, opt in optimizers.items():
        assign_by_path(optimizer_paths(opt, weights), flatten(tree["optimizer"].get(name, {})), path,
                       f"optimizer {name!r}")
    tree = _upgrade(tree)
    check_resumed_data(tree, owners.get("data"), path)
    load_states(tree, owners)


def check_resumed_data(tree: dict, source, path: str) -> None:
    """Compares the training data with what the checkpoint recorded (batches per epoch, batch
    size). In the middle of an epoch a difference would silently skip or repeat part of it, so it
    is refused; at an epoch's end the new data is used from the next epoch on, with a warning.

    Raises:
        ValueError: resuming mid-epoch on data of another length or batch size.
    """
    saved = tree.get("data", {})
    progress = tree.get("trainer", {})
    if source is None:
        return
    changes = [f"{what}: {int(saved[key])} in the checkpoint, {now} now"
               for key, what, now in (("num_batches", "batches per epoch", source.num_batches),
                                      ("batch_size", "batch size", source.batch_size))
               if now and int(saved.get(key, -1)) > 0 and int(saved[key]) != now]
    if not changes:
        return
    batch = int(progress.get("batches_done", 0))
    epoch = int(progress.get("epoch", 0))
    if batch and not progress.get("epoch_done", False):
        raise ValueError(
            f"Checkpoint {path!r} was saved after batch {batch} of epoch {epoch}, but the training "
            f"data differs from that run's ({'; '.join(changes)}): the rest of the epoch would not be "
            "the batches that run had left. Resume with the same data and batch_size, resume from "
            "a checkpoint saved at an epoch's end, or load the weights with "
            "YourModule.load_from_checkpoint(path) and start a new fit.")
    warnings.warn(f"Resuming from {path!r} with other training data ({'; '.join(changes)}); "
                  "the next epochs use the new data.", UserWarning, stacklevel=4)


def load_states(tree: dict, owners: dict) -> None:
    """Gives each owner its group of ``tree`` (a list of owners: the list of states, in order)."""
    for name, owner in owners.items():
        if owner is None or name not in tree:
            continue
        if isinstance(owner, list):
            for item, state in zip(owner, tree[name]):
                item.load_state_dict(state)
        else:
            owner.load_state_dict(tree[name])


def _upgrade(tree: dict) -> dict:
    """Format 1 kept the shuffle seed and the XLA choice in the ``trainer`` group."""
    if int(tree.get("format_version", FORMAT_VERSION)) >= 2:
        return tree
    tree = dict(tree)
    progress = tree.get("trainer", {})
    tree.setdefault("data", {"seed": progress.get("train_seed", -1)})
    tree.setdefault("tuner", {"jit": progress.get("jit", -1), "reason": "checkpoint"})
    return tree


def checkpoint_dirs(callbacks, default_root_dir) -> list:
    """Where a trainer's checkpoints live: its ModelCheckpoint folders, then the default one."""
    dirs = [c.dirpath for c in callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
    return dirs + [os.path.join(default_root_dir, "checkpoints")]


def last_checkpoint_path(callbacks, default_root_dir) -> str:
    """Where a graceful stop (SIGTERM/SIGINT) saves: ``last.ckpt`` in the first checkpoint folder."""
    return os.path.join(checkpoint_dirs(callbacks, default_root_dir)[0], "last.ckpt")


def find_checkpoint(ckpt_path, callbacks, default_root_dir, loggers=(), *, required: bool = False):
    """``(tree, path)`` of the checkpoint ``ckpt_path`` names (see `resolve_ckpt_path`), read
    and verified, or ``None`` when there is none to load (``required``: an error instead).

    With ``"last"``, a damaged newest file is skipped with a warning for the newest one that reads.
    """
    path = resolve_ckpt_path(ckpt_path, callbacks, default_root_dir, loggers, required=required)
    if path is None:
        return None
    candidates = _last_candidates(callbacks, default_root_dir, loggers) if ckpt_path == "last" else [path]
    for candidate in candidates[:-1]:
        try:
            return read_checkpoint(candidate), candidate
        except ValueError as error:
            warnings.warn(f'ckpt_path="last": {str(error).splitlines()[0]} Trying the next newest.')
    return read_checkpoint(candidates[-1]), candidates[-1]


def resolve_ckpt_path(ckpt_path, callbacks, default_root_dir, loggers=(), *, required: bool = False):
    """Turns ``ckpt_path`` (a path, ``"last"``, ``"best"`` or ``None``) into a file path or ``None``.

    ``"last"`` is the newest ``last*.ckpt`` among the checkpoint folders, those of every logger run
    folder included (temp files of interrupted writes start with a dot and never match); none
    found warns and returns ``None`` (a fit starts fresh), or, when ``required`` (validate, test
    and predict: weights they would not have trained), raises.

    Raises:
        FileNotFoundError: ``required`` and no last checkpoint.
        ValueError: ``"best"`` without a ModelCheckpoint that has saved.
        TypeError: a ``ckpt_path`` that is no path.
    """
    if ckpt_path is None:
        return None
    if not isinstance(ckpt_path, (str, os.PathLike)):
        raise TypeError('`ckpt_path` must be a checkpoint file (a str or pathlib.Path), "last", '
                        f'"best" or None. Received: ckpt_path={ckpt_path!r}')
    if ckpt_path == "best":
        best = [c.best_model_path for c in callbacks
                if isinstance(c, ModelCheckpoint) and c.best_model_path]
        best = best or _best_in_newest(callbacks, default_root_dir, loggers)  # a new process
        if not best:
            raise ValueError(
                'ckpt_path="best" needs a ModelCheckpoint that has saved a checkpoint, in this '
                "Trainer or in the newest last checkpoint of its folders. Pass a path instead. "
                "Received: ckpt_path='best'")
        return best[0]
    if ckpt_path == "last":
        folders = _every_checkpoint_dir(callbacks, default_root_dir, loggers)
        found = _last_candidates(callbacks, default_root_dir, loggers)
        if not found and required:
            raise FileNotFoundError(
                f'ckpt_path="last" found no last checkpoint (last*.ckpt) in {folders}, so there are '
                "no trained weights to evaluate. Save one with ModelCheckpoint(save_last=True), or "
                "pass ckpt_path='best' or a checkpoint's path.")
        if not found:
            warnings.warn(f'ckpt_path="last" found no last checkpoint in {folders}; training starts '
                          "from scratch.")
            return None
        return found[0]
    return os.fspath(ckpt_path)


def _last_candidates(callbacks, default_root_dir, loggers) -> list:
    """Every last checkpoint (``last*.ckpt``) of the checkpoint folders, newest first."""
    found = [c.last_model_path for c in callbacks if isinstance(c, ModelCheckpoint) and c.last_model_path]
    for folder in _every_checkpoint_dir(callbacks, default_root_dir, loggers):
        found += glob.glob(os.path.join(folder, "last*.ckpt"))
    return sorted({path for path in found if os.path.isfile(path)}, key=os.path.getmtime, reverse=True)


def _every_checkpoint_dir(callbacks, default_root_dir, loggers) -> list:
    folders = checkpoint_dirs(callbacks, default_root_dir)
    for logger in loggers:  # every run of the experiment: resume continues the newest
        folders += glob.glob(os.path.join(logger.save_dir, logger.name, "*", "checkpoints"))
    return folders


def _best_in_newest(callbacks, default_root_dir, loggers) -> list:
    """The best checkpoint that the newest checkpoint file remembers (its ModelCheckpoint's
    state), for ``ckpt_path="best"`` in a process that has not trained (``kerastrainer test
    --ckpt_path best``)."""
    found = [path for folder in _every_checkpoint_dir(callbacks, default_root_dir, loggers)
             for path in glob.glob(os.path.join(folder, "*.ckpt")) if os.path.isfile(path)]
    if not found:
        return []
    states = read_checkpoint(max(found, key=os.path.getmtime)).get("callbacks", {})
    return [state["best_model_path"] for state in states.values()
            if isinstance(state, dict) and state.get("best_model_path")
            and os.path.isfile(state["best_model_path"])]


def _subclasses(base) -> list:
    """Every subclass of ``base`` alive in this process, depth first."""
    found = []
    for sub in base.__subclasses__():
        found.append(sub)
        found += _subclasses(sub)
    return found


def saved_module_class(base, name, path, *, safe_mode: bool) -> type:
    """The subclass of ``base`` (``TrainModule``) that a checkpoint at ``path`` names as ``name``
    (``module.qualname``): one already imported; with ``safe_mode=False``, or one found by
    importing its module. Nothing else is imported or called: the file is untrusted input.

    Raises:
        ValueError: ``name`` is no such class; the message says what the file names and the fix.
    """
    where = f"kt.TrainModule.load_from_checkpoint({str(path)!r})"
    named = str(name)
    matches = [c for c in _subclasses(base) if f"{c.__module__}.{c.__qualname__}" == named]
    if matches:
        return matches[-1]  # the newest definition, as a re-run cell or script would use
    module_name, _, qualname = named.rpartition(".")
    if safe_mode:
        raise ValueError(
            f"{where} refuses: the file names the class {named!r}, which is not a TrainModule "
            "subclass imported in this process, and safe_mode=True imports nothing a file names. "
            f"Import its module first, or call {qualname or named}.load_from_checkpoint(...) on "
            "the class itself; pass safe_mode=False only for a file you trust (its module is then "
            f"imported, which runs its code). Received: class={named!r}")
    found = None
    try:
        found = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError):
        found = None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ValueError(
            f"{where} refuses: the file names the class {named!r}, which is not a TrainModule "
            "subclass that can be imported; nothing it names was called. Load it with the class "
            f"it was saved from: MyModule.load_from_checkpoint(...). Received: class={named!r}")
    return found


def refuse_repr_hparams(cls, path, saved: dict, hparams: dict, overrides: dict) -> None:
    """Refuses to pass ``__init__`` the repr of a hyperparameter that was not JSON when saved (a
    string such as ``'<object at 0x...>'`` would be taken as the value).

    Raises:
        TypeError: naming the hyperparameter and the override that fixes it.
    """
    for name in saved.get("hparams_as_repr", []):
        if name in hparams and name not in overrides:
            raise TypeError(
                f"{cls.__name__}.load_from_checkpoint({str(path)!r}): the hyperparameter `{name}` "
                f"was saved as its repr {hparams[name]!r}, not as a value (it is not JSON). Pass it "
                f"again: {cls.__name__}.load_from_checkpoint(path, {name}=...).")


_MISSING = object()


def _same(value, saved) -> bool:
    """Whether a rebuilt module's hyperparameter equals its saved (plain) value."""
    if value is _MISSING:
        return False
    plain, as_repr = json_value(value)
    if not as_repr:
        plain = json.loads(json.dumps(plain))  # as the checkpoint reads back: tuples are lists
    return plain == saved


def warn_lost_hparams(cls, path, saved: dict, passed: dict, module) -> None:
    """Warns naming the saved hyperparameters that did not reach ``__init__`` and that the rebuilt
    module does not hold with their saved value (a child that passes its parent's argument itself
    holds it): an argument renamed since the checkpoint was written, whose value is dropped."""
    rebuilt = getattr(module, "hparams", {}) or {}
    lost = sorted(name for name in saved
                  if name not in passed and not _same(rebuilt.get(name, _MISSING), saved[name]))
    if not lost:
        return
    shown = ", ".join(f"{name}={saved[name]!r}" for name in lost)
    warnings.warn(
        f"{cls.__name__}.load_from_checkpoint({str(path)!r}): the saved hyperparameters {shown} are "
        f"not arguments of {cls.__name__}.__init__ any more, so they were not used. If an argument "
        "was renamed, pass the saved value under its new name, e.g. "
        f"{cls.__name__}.load_from_checkpoint(path, new_name={saved[lost[0]]!r}).", stacklevel=3)


def load_module(cls, path, overrides: dict, *, saved_class: bool = False, safe_mode: bool = True):
    """``cls.load_from_checkpoint(path, **overrides)``: ``cls(**hparams, **overrides)``, built as
    it was built in its run, its weights loaded; with ``saved_class``, the class the checkpoint
    names (`saved_module_class`) instead of ``cls``."""
    tree = read_checkpoint(path)
    if saved_class:
        cls = saved_module_class(cls, tree["module"].get("class"), path, safe_mode=safe_mode)
    saved_hparams = dict(tree["module"].get("hparams", {}))
    hparams = saved_hparams
    params = inspect.signature(cls.__init__).parameters.values()
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        # hparams saved by a parent __init__ may not all be arguments of this class (Lightning
        # filters the same way); explicit overrides are passed as given.
        names = {p.name for p in params}
        hparams = {k: v for k, v in saved_hparams.items() if k in names}
    hparams.update(overrides)
    refuse_repr_hparams(cls, path, tree["module"], hparams, overrides)
    try:
        module = cls(**hparams)
    except TypeError as error:
        raise TypeError(
            f"{cls.__name__}.load_from_checkpoint({str(path)!r}) could not rebuild the module with "
            f"the saved hyperparameters {sorted(hparams)}: {error}. Pass missing or renamed "
            "arguments as keyword overrides."
        ) from error
    warn_lost_hparams(cls, path, saved_hparams, hparams, module)
    saved = tree["module"]
    if "build" in saved:  # its own step built it: trace that step again
        rebuild_by_step(module, saved["build"]["step"], spec_from_tree(saved["build"]["batch"]))
    elif "input_spec" in saved:
        build_from_spec(module, spec_from_tree(saved["input_spec"]))
    restore_weights(module, tree, os.fspath(path))
    return module
