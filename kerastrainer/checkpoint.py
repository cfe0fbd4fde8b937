"""What goes into a training checkpoint and how it is put back.

Variables are stored by *path*: the chain of attribute names from the module to the variable
(``hidden/kernel``, ``blocks/0/w``), which stays the same across processes, unlike Keras's
auto-generated layer and variable names (``dense_3``, ``variable_2``).
"""

from __future__ import annotations

import glob
import json
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.seed import rng_state, set_rng_state

FORMAT = "kerastrainer.checkpoint"
FORMAT_VERSION = 1


def _clean(name: str, taken: set) -> str:
    stripped = name.lstrip("_") or name
    return stripped if stripped not in taken else name


def variable_paths(module) -> dict:
    """Maps a stable path to every variable of ``module`` (weights, non-trainable state, RNG states)."""
    paths: dict[str, object] = {}
    seen: set[int] = set()

    def record(path, variable):
        if id(variable) not in seen:
            seen.add(id(variable))
            paths[path] = variable

    def visit(value, path, depth):
        if isinstance(value, keras.Variable):
            record(path, value)
        elif isinstance(value, keras.random.SeedGenerator):
            record(f"{path}/state", value.state)
        elif isinstance(value, keras.layers.Layer):
            walk(value, path + "/", depth + 1)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(item, f"{path}/{index}", depth)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "/" not in key:
                    visit(item, f"{path}/{key}", depth)

    def walk(layer, prefix, depth):
        if id(layer) in seen or depth > 64:
            return
        seen.add(id(layer))
        items = [(k, v) for k, v in vars(layer).items() if not k.startswith("__") and k != "_kt_trainer"]
        # Public attributes name things first; then private single objects (Dense's `_kernel`);
        # Keras's private bookkeeping lists (`_layers`, `_trainable_variables`) only pick up the rest.
        ordered = [kv for kv in items if not kv[0].startswith("_")]
        ordered += [kv for kv in items if kv[0].startswith("_") and not isinstance(kv[1], (list, tuple, dict))]
        ordered += [kv for kv in items if kv[0].startswith("_") and isinstance(kv[1], (list, tuple, dict))]
        taken: set[str] = set()
        for name, value in ordered:
            clean = _clean(name, taken)
            taken.add(clean)
            visit(value, f"{prefix}{clean}", depth)

    walk(module, "", 0)
    for variable in module.variables:  # anything the walk could not name keeps Keras's path
        record(f"_unnamed/{variable.path}", variable)
    return paths


def optimizer_paths(optimizer, module_paths: dict) -> dict:
    """Maps optimizer variables to ``iteration``, ``learning_rate`` or ``slots/<variable path>/<slot>``."""
    by_flat = {var.path.replace("/", "_"): path for path, var in module_paths.items()}
    flats = sorted(by_flat, key=len, reverse=True)  # longest first: dense_1_kernel before dense_1
    paths = {}
    for variable in optimizer.variables:
        name = variable.name
        owner = next((flat for flat in flats if name.startswith(flat + "_")), None)
        if owner is None:
            paths[name] = variable
        else:
            paths[f"slots/{by_flat[owner]}/{name[len(owner) + 1:]}"] = variable
    return paths


def nest(flat: dict) -> dict:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}`` (HDF5 groups)."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def flatten(tree: dict, prefix: str = "") -> dict:
    """The inverse of :func:`nest`."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
    """The inverse of :func:`spec_to_tree`."""
    if isinstance(node, dict) and set(node) == {"shape", "dtype"}:
        return tf.TensorSpec(node["shape"], node["dtype"])
    if isinstance(node, dict):
        return {key: spec_from_tree(value) for key, value in node.items()}
    return tuple(spec_from_tree(value) for value in node)


def plain_hparams(hparams: dict) -> dict:
    """Hyperparameters as JSON values; anything else is kept as its repr, with a warning."""
    plain = {}
    for key, value in hparams.items():
        try:
            json.dumps(value)
            plain[key] = value
        except TypeError:
            warnings.warn(f"Hyperparameter {key}={value!r} is not JSON-serialisable; the checkpoint "
                          "keeps its repr, so load_from_checkpoint needs it as an override.")
            plain[key] = repr(value)
    return plain


def _state_key(callback) -> str:
    return callback.state_key.replace("/", "|")  # HDF5 group names cannot hold '/'


def build_checkpoint(trainer, *, weights_only: bool = False) -> dict:
    """Assembles the checkpoint of ``trainer``'s current state as a nested dict of arrays/JSON."""
    import kerastrainer

    module = trainer.module
    weights = variable_paths(module)
    cls = type(module)
    tree = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"kerastrainer": kerastrainer.__version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__},
        "module": {"class": f"{cls.__module__}.{cls.__qualname__}",
                   "hparams": plain_hparams(module.hparams)},
        "weights": nest({path: np.asarray(var.numpy()) for path, var in weights.items()}),
    }
    if module._kt_input_spec is not None:
        tree["module"]["input_spec"] = spec_to_tree(module._kt_input_spec)
    if weights_only:
        return tree
    optimizers = module.optimizer if isinstance(module.optimizer, dict) else {"": module.optimizer}
    tree["optimizer"] = {
        (name or "default"): nest({path: np.asarray(var.numpy())
                                   for path, var in optimizer_paths(opt, weights).items()})
        for name, opt in optimizers.items() if opt is not None
    }
    source = trainer._train_source
    tree["trainer"] = {
        "epoch": trainer.current_epoch, "global_step": trainer.global_step,
        "batches_done": trainer._batches_done, "epoch_done": trainer._epoch_done,
        "validated_at": trainer._validated_at if trainer._validated_at is not None else -1,
        "train_seed": source.seed if source is not None and source.seed is not None else -1,
        "num_training_batches": trainer.num_training_batches
        if trainer.num_training_batches is not None else -1,
        # The XLA choice of jit_compile="auto": a resumed run computes exactly as before.
        "jit": trainer._compiled.tuner.state_dict()["jit"] if trainer._compiled else -1,
    }
    tree["trainer"]["history"] = json.dumps(trainer.history)  # metric names may hold '/'
    accumulation = trainer._compiled.state_variables() if trainer._compiled else {}
    tree["accumulation"] = nest({k: np.asarray(v.numpy()) for k, v in accumulation.items()})
    scheduler = trainer._lr_scheduler["scheduler"] if trainer._lr_scheduler else None
    if hasattr(scheduler, "state_dict"):
        tree["lr_scheduler"] = scheduler.state_dict()

    tree["loggers"] = [logger.state_dict() for logger in trainer.loggers]
    tree["rng"] = rng_state()
    tree["logs"] = nest(trainer._logs.state_dict())
    tree["callbacks"] = {_state_key(c): c.state_dict() for c in trainer.callbacks}
    datamodule = trainer._datamodule
    tree["datamodule"] = datamodule.state_dict() if datamodule is not None else {}
    if datamodule is not None and datamodule.hparams:
        tree["datamodule_hparams"] = plain_hparams(datamodule.hparams)
    if trainer._bus is not None:
        trainer._bus.call("on_save_checkpoint", tree)
    return tree


def restore_weights(module, tree: dict, path: str) -> None:
    """Loads the checkpoint's weights into a built ``module`` (by path, all mismatches listed)."""
    if tree.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a kerastrainer checkpoint (format={tree.get('format')!r}).")
    assign_by_path(variable_paths(module), flatten(tree["weights"]), path, type(module).__name__)


def restore_training_state(trainer, tree: dict, path: str) -> None:
    """Puts back everything a resumed fit needs: weights, optimizer, progress, RNG, logs, callbacks."""
    module = trainer.module
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
    state = tree["trainer"]
    trainer.current_epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    trainer._batches_done = int(state["batches_done"])
    trainer._epoch_done = bool(state["epoch_done"])
    trainer._validated_at = int(state["validated_at"]) if state["validated_at"] >= 0 else None
    if trainer._train_source is not None and state["train_seed"] >= 0:
        trainer._train_source.seed = int(state["train_seed"])
    trainer.history = json.loads(state.get("history", "{}"))
    if trainer._compiled is not None and "jit" in state:
        trainer._compiled.tuner.load_state_dict({"jit": int(state["jit"]), "reason": "checkpoint"})
    accumulation = trainer._compiled.state_variables() if trainer._compiled else {}
    for key, value in flatten(tree.get("accumulation", {})).items():
        if key in accumulation:
            accumulation[key].assign(value)
    scheduler = trainer._lr_scheduler["scheduler"] if trainer._lr_scheduler else None
    if hasattr(scheduler, "load_state_dict") and "lr_scheduler" in tree:
        scheduler.load_state_dict(tree["lr_scheduler"])
    set_rng_state(tree["rng"])
    trainer._logs.load_state_dict(flatten(tree["logs"]))
    saved = tree.get("callbacks", {})
    for callback in trainer.callbacks:
        if _state_key(callback) in saved:
            callback.load_state_dict(saved[_state_key(callback)])
    if trainer._datamodule is not None:
        trainer._datamodule.load_state_dict(tree.get("datamodule", {}))
    trainer._bus.call("on_load_checkpoint", tree)


def checkpoint_dirs(callbacks, default_root_dir) -> list:
    """Where a trainer's checkpoints live: its ModelCheckpoint folders, then the default one."""
    dirs = [c.dirpath for c in callbacks if getattr(c, "saves_checkpoints", False)
            and getattr(c, "dirpath", None)]
    return dirs + [os.path.join(default_root_dir, "checkpoints")]


def resolve_ckpt_path(ckpt_path, callbacks, default_root_dir, loggers=()):
    """Turns ``ckpt_path`` (a path, ``"last"``, ``"best"`` or ``None``) into a file path or ``None``.

    ``"last"`` is the newest ``last*.ckpt`` among the checkpoint folders, those of every logger run
    folder included (temp files of interrupted writes start with a dot and never match); none found warns and returns ``None`` (start fresh).

    Raises:
        ValueError: ``"best"`` without a ModelCheckpoint that has saved.
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "best":
        best = [c.best_model_path for c in callbacks if getattr(c, "best_model_path", "")]
        if not best:
            raise ValueError(
                'ckpt_path="best" needs a ModelCheckpoint callback in this Trainer that has saved a '
                "checkpoint. Pass a path instead. Received: ckpt_path='best'")
        return best[0]
    if ckpt_path == "last":
        folders = checkpoint_dirs(callbacks, default_root_dir)
        for logger in loggers:  # every run of the experiment: resume continues the newest
            folders += glob.glob(os.path.join(logger.save_dir, logger.name, "*", "checkpoints"))
        found = [c.last_model_path for c in callbacks if getattr(c, "last_model_path", "")]
        for folder in folders:
            found += glob.glob(os.path.join(folder, "last*.ckpt"))
        found = [path for path in found if os.path.isfile(path)]
        if not found:
            warnings.warn(f'ckpt_path="last" found no last checkpoint in {folders}; training starts '
                          "from scratch.")
            return None
        return max(found, key=os.path.getmtime)
    return os.fspath(ckpt_path)
