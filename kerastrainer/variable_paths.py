"""Stable names for a module's variables: the chain of attribute names that leads to each.

A path such as ``hidden/kernel`` or ``blocks/0/w`` stays the same across processes, unlike Keras's
auto-generated layer and variable names (``dense_3``, ``variable_2``), so checkpoints store
variables by path.
"""

from __future__ import annotations

import keras


def _clean(name: str, taken: set) -> str:
    stripped = name.lstrip("_") or name
    return stripped if stripped not in taken else name


def variable_paths(module) -> dict:
    """Maps a stable path to every variable of ``module`` (weights, non-trainable state, RNG states)."""
    paths: dict[str, object] = {}
    seen: set[int] = set()
    # By identity, not isinstance: Keras before 3.6 exports `keras.Variable` as a class its
    # backends' variables do not derive from.
    owned = {id(variable) for variable in module.variables}

    def record(path, variable):
        if id(variable) not in seen:
            seen.add(id(variable))
            paths[path] = variable

    def visit(value, path, depth):
        if id(value) in owned or isinstance(value, keras.Variable):
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
