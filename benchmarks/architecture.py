"""How readable kerastrainer's core is: a few structural figures, measured from the source.

    .venv/bin/python benchmarks/architecture.py [--json out.json] [--no-trace]

1. lines of ``kerastrainer/trainer.py``;
2. ``Trainer._fit``: its lines, local names it binds, ``self.<attr>`` it touches and writes;
3. every function in the package longer than 60 lines, and the longest one;
4. private trainer attributes other modules use (``trainer._x``, ``self._kt_trainer._x``), private
   attributes named by string (``getattr(obj, "_x")``), helpers that take the whole trainer, and
   packed assignments that hide a call (``a, b = x, f()``);
5. import cycles between package modules (Tarjan's SCCs), imports inside functions included;
6. a walk of one batch: ``sys.setprofile`` over a one-batch ``Trainer.fit`` (after an untraced
   warm-up fit), counting the kerastrainer files and functions entered, the calls made and the file
   switches (set-up included), the same for a fit of one ten-batch epoch; and the path itself: the
   kerastrainer frames on the stack from ``Trainer.fit`` to the optimizer update (traced into the
   compiled step) and to the device read behind the progress bar's number.
Parts 1-5 read the source only; part 6 imports kerastrainer and TensorFlow (``--no-trace``: skip).
"""

from __future__ import annotations

import argparse
import ast
import collections
import io
import json
import os
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "kerastrainer")
TRAINER_PY = os.path.join("kerastrainer", "trainer.py")
LONG = 60  # functions longer than this many lines are listed
TRAINER_NAMES = {"trainer", "_kt_trainer"}  # the names other modules hold the trainer under
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
          ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def sources():
    """{path relative to the repository: (module name, ast)} for every .py file of the package."""
    out = {}
    for folder, dirs, files in os.walk(PKG):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            rel = os.path.relpath(os.path.join(folder, name), ROOT)
            parts = os.path.splitext(rel)[0].split(os.sep)
            with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
                out[rel] = (".".join(parts[:-1] if name == "__init__.py" else parts),
                            ast.parse(f.read(), rel))
    return out


def functions(tree, prefix=""):
    """(qualname, node) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from functions(node, prefix + node.name + ".<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, prefix + node.name + ".")


def own_scope(node):
    """A function's nodes, less those of nested functions, classes and comprehensions."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, SCOPES):
            yield child
            yield from own_scope(child)


def fit_figures(tree):
    """``Trainer._fit``'s lines, local names, ``self.<attr>`` touched and written ({} if absent)."""
    fit = next((n for q, n in functions(tree) if q == "Trainer._fit"), None)
    if fit is None:
        return {}
    local = {n.id for n in own_scope(fit)  # assigned, for/with/walrus targets, del
             if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    local |= {n.name for n in own_scope(fit) if isinstance(n, ast.ExceptHandler) and n.name}
    local |= {(a.asname or a.name).split(".")[0] for n in own_scope(fit)
              if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    touched, written = set(), set()
    for n in ast.walk(fit):  # closures inside _fit act on the same self
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
            touched.add(n.attr)
            if not isinstance(n.ctx, ast.Load):
                written.add(n.attr)
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "setattr"
              and len(n.args) > 1 and isinstance(n.args[0], ast.Name) and n.args[0].id == "self"
              and isinstance(n.args[1], ast.Constant)):
            touched.add(n.args[1].value)
            written.add(n.args[1].value)
    return {"fit_lines": fit.end_lineno - fit.lineno + 1, "fit_local_names": len(local),
            "fit_self_attrs_touched": len(touched), "fit_self_attrs_written": len(written)}


def private_access(src):
    """(path, line, expression, attribute) of each ``<trainer>._x`` outside trainer.py."""
    def names_trainer(v):
        return ((isinstance(v, ast.Name) and v.id in TRAINER_NAMES)
                or (isinstance(v, ast.Attribute) and v.attr in TRAINER_NAMES))
    return sorted((rel, n.lineno, ast.unparse(n), n.attr)
                  for rel, (_, tree) in src.items() if rel != TRAINER_PY for n in ast.walk(tree)
                  if isinstance(n, ast.Attribute) and n.attr.startswith("_")
                  and not n.attr.endswith("__") and names_trainer(n.value))


def private_by_name(src):
    """(path, line, call) of each ``getattr``/``hasattr``/``setattr`` naming a private attribute."""
    return sorted((rel, n.lineno, ast.unparse(n)) for rel, (_, tree) in src.items()
                  for n in ast.walk(tree)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                  and n.func.id in ("getattr", "hasattr", "setattr") and len(n.args) > 1
                  and isinstance(n.args[1], ast.Constant) and isinstance(n.args[1].value, str)
                  and n.args[1].value.startswith("_") and not n.args[1].value.endswith("__"))


def takes_the_trainer(src):
    """(path, line, function) of each helper that takes the whole trainer as a parameter.

    Callbacks, their bus and the LR/batch-size ``Tuner`` take it by contract (Lightning's); so do
    hooks wherever they are defined. Everything else is built from explicit values.
    """
    contract = ("kerastrainer/callbacks/", "kerastrainer/tuner/")
    out = []
    for rel, (_, tree) in src.items():
        if rel == TRAINER_PY or rel.startswith(contract):
            continue
        for qualname, node in functions(tree):
            name = node.name
            hook = name in ("setup", "teardown", "step_interval") or name.startswith("on_")
            params = [a.arg for a in node.args.args + node.args.kwonlyargs]
            if not hook and "trainer" in params:
                out.append((rel, node.lineno, qualname))
    return sorted(out)


def packed_calls(src):
    """(path, line, statement) of each tuple assignment whose values hold a call (``a, b = x, f()``),
    which hides the call's effect in a packed line."""
    out = []
    for rel, (_, tree) in src.items():
        for n in ast.walk(tree):
            if not isinstance(n, ast.Assign) or not isinstance(n.value, (ast.Tuple, ast.List)):
                continue
            if not any(isinstance(t, (ast.Tuple, ast.List)) for t in n.targets):
                continue
            if any(isinstance(m, ast.Call) for e in n.value.elts for m in ast.walk(e)):
                out.append((rel, n.lineno, ast.unparse(n).splitlines()[0]))
    return sorted(out)


def import_graph(src):
    """{module: {module it imports: line}}; the top-level package (lazy imports) is left out."""
    modules = {m for m, _ in src.values()}
    graph = {}
    for rel, (me, tree) in src.items():
        if me == "kerastrainer":
            continue
        edges = graph.setdefault(me, {})
        here = me if rel.endswith("__init__.py") else me.rpartition(".")[0]
        skip = {id(m) for n in ast.walk(tree) if isinstance(n, ast.If)  # never runs
                and "TYPE_CHECKING" in ast.unparse(n.test) for s in n.body for m in ast.walk(s)}
        for n in ast.walk(tree):
            if id(n) in skip or not isinstance(n, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            else:
                base = n.module or ""
                if n.level:  # relative: from . import x / from ..a import x
                    up = here.split(".")[:len(here.split(".")) - n.level + 1]
                    base = ".".join(up + ([n.module] if n.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in n.names]  # y may be a submodule
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target not in modules:
                    continue
                chain = target.split(".")  # importing a.b.c executes the package a.b first,
                for i in range(2, len(chain) + 1):  # unless the importer sits in it (it ran)
                    dep = ".".join(chain[:i])
                    if dep != me and (i == len(chain) or not me.startswith(dep + ".")):
                        edges.setdefault(dep, n.lineno)
    return graph


def tarjan(graph):
    """Strongly connected components of more than one node."""
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = [stack.pop()]
            while scc[-1] != v:
                scc.append(stack.pop())
            on_stack.difference_update(scc)
            sccs.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(s for s in sccs if len(s) > 1)


def walk_one_batch(rows=32):
    """{(file, qualname, first line): calls} of kerastrainer code during a fit of ``rows`` rows
    (batches of 32: one batch by default; ``rows=320`` is an epoch of ten batches), the paths, and
    the file switches (kerastrainer calls made from another kerastrainer file than the one last
    entered)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np
    import rich.console

    import kerastrainer as kt

    pkg_dir = os.path.dirname(os.path.abspath(kt.__file__)) + os.sep
    if pkg_dir != PKG + os.sep:
        print(f"note: tracing the kerastrainer imported from {pkg_dir}", file=sys.stderr)

    class Tiny(kt.TrainModule):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.dense(x)

        def loss(self, y_true, y_pred):
            return keras.losses.mean_squared_error(y_true, y_pred)

        def configure_optimizer(self):
            return keras.optimizers.SGD(0.01)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).astype("float32")
    y = rng.normal(size=(rows, 1)).astype("float32")
    calls, converted = collections.Counter(), collections.Counter()
    last_file = [None]
    switches = [0]
    paths = {}  # "optimizer update" / "bar's number": the kerastrainer frames on the stack then

    def key(code):
        return (os.path.relpath(code.co_filename, os.path.dirname(pkg_dir.rstrip(os.sep))),
                getattr(code, "co_qualname", code.co_name), code.co_firstlineno)

    def stack(frame):
        found = []
        while frame is not None:
            code = frame.f_code
            if code.co_filename.startswith(pkg_dir):
                found.append(key(code))
            elif code.co_name.startswith("tf__") and "__autograph_generated_file" in code.co_filename:
                target = frame.f_back.f_locals.get("target_entity") if frame.f_back else None
                orig = getattr(getattr(target, "__func__", target), "__code__", None)
                if orig is not None and orig.co_filename.startswith(pkg_dir):
                    found.append(key(orig))
            frame = frame.f_back
        return found[::-1]

    def profiler(frame, event, arg):
        code = frame.f_code
        if event != "call":
            return
        name = getattr(code, "co_qualname", code.co_name)
        if code.co_name == "apply_gradients" and "optimizer" in code.co_filename:
            paths.setdefault("optimizer update", stack(frame.f_back))
        if code.co_filename.startswith(pkg_dir):
            calls[key(code)] += 1
            if code.co_filename != last_file[0]:
                switches[0] += 1
                last_file[0] = code.co_filename
            if name == "StageState.read" and "bar's number" not in paths and any(
                    "RichProgressBar" in q for _, q, _ in stack(frame)):
                paths["bar's number"] = stack(frame)
        elif code.co_name.startswith("tf__") and "__autograph_generated_file" in code.co_filename:
            # AutoGraph runs a converted copy of the step code from a temp file; its caller,
            # converted_call, holds the original. (Its if_body/loop_body pieces are not calls.)
            target = frame.f_back.f_locals.get("target_entity") if frame.f_back else None
            orig = getattr(getattr(target, "__func__", target), "__code__", None)
            if orig is not None and orig.co_filename.startswith(pkg_dir):
                calls[key(orig)] += 1
                converted[key(orig)] += 1
            elif (frame.f_globals.get("__file__") or "").startswith(pkg_dir):
                converted["unmapped"] += 1  # not seen with TF 2.x so far; counted, not listed

    def one_fit(trace):
        bar = kt.callbacks.RichProgressBar(console=rich.console.Console(file=io.StringIO()))
        trainer = kt.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                             enable_model_summary=False, enable_progress_bar=True,
                             steps_per_execution=1, jit_compile=False, num_sanity_val_steps=0,
                             callbacks=[bar])
        module = Tiny()
        threading.setprofile(profiler if trace else None)  # threads the fit starts
        sys.setprofile(profiler if trace else None)
        try:
            trainer.fit(module, train_data=(x, y))
        finally:
            sys.setprofile(None)
            threading.setprofile(None)

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:  # anything a run writes lands here
        os.chdir(tmp)
        try:
            one_fit(trace=False)  # warm-up: imports and first-use set-up
            one_fit(trace=True)
        finally:
            os.chdir(cwd)
    return calls, converted, paths, switches[0]


def report_walk(figure, report, calls, converted, paths, switches):
    by_file = collections.defaultdict(list)
    for (f, q, first), c in sorted(calls.items()):
        n = converted.get((f, q, first))
        by_file[f].append(f"{q}:{first} x{c}" + (f" ({n} via autograph)" if n else ""))
    figure("walk_files", len(by_file))
    figure("walk_functions", len(calls))
    figure("walk_calls", sum(calls.values()))
    figure("walk_calls_via_autograph", sum(converted.values()))
    figure("walk_file_switches", switches)
    figure("walk_functions_by_file", "", [line for f, entries in by_file.items() for line in [
        f"{f} ({len(entries)} functions, {sum(c for k, c in calls.items() if k[0] == f)} calls)"]
        + [f"  {e}" for e in entries]])
    report["walk_functions_by_file"] = dict(by_file)
    # The path itself: from Trainer.fit down to the optimizer update (traced into the step) and to
    # the device read behind the progress bar's number; each frame counted once.
    union = []
    for what, frames in sorted(paths.items()):
        figure(f"path_to_{what.replace(' ', '_').replace(chr(39), '')}",
               f"{len(frames)} calls, {len({f for f, _, _ in frames})} files",
               [f"{f}:{q}" for f, q, _ in frames])
        union += [frame for frame in frames if frame not in union]
    figure("path_total", f"{len(union)} functions in {len({f for f, _, _ in union})} files")
    report["path_frames"] = {what: [f"{f}:{q}" for f, q, _ in fr] for what, fr in paths.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--no-trace", action="store_true", help="skip part 6 (no TensorFlow)")
    args = parser.parse_args()
    src, report = sources(), {}

    def figure(key, value, items=()):
        print(f"{key}: {value}", *[f"  {item}" for item in items], sep="\n", flush=True)
        report[key] = value

    with open(os.path.join(ROOT, TRAINER_PY), encoding="utf-8") as f:
        figure("trainer_py_lines", len(f.read().splitlines()))
    fit = fit_figures(src[TRAINER_PY][1])
    for key in ("fit_lines", "fit_local_names", "fit_self_attrs_touched", "fit_self_attrs_written"):
        figure(key, fit.get(key, "n/a"))

    funcs = sorted(((rel, q, n.end_lineno - n.lineno + 1)
                    for rel, (_, t) in src.items() for q, n in functions(t)),
                   key=lambda f: (-f[2], f[0], f[1]))
    report["long_functions"] = [f"{r}:{q} ({n} lines)" for r, q, n in funcs if n > LONG]
    figure(f"functions_over_{LONG}_lines", len(report["long_functions"]), report["long_functions"])
    figure("longest_function", "{}:{} ({} lines)".format(*funcs[0]))

    hits = private_access(src)
    report["private_trainer_access_list"] = [f"{r}:{ln} {e}" for r, ln, e, _ in hits]
    figure("private_trainer_access", len(hits), report["private_trainer_access_list"])
    figure("private_trainer_attrs_distinct", len({a for *_, a in hits}),
           sorted({a for *_, a in hits}))
    per_file = collections.Counter(r for r, *_ in hits).most_common()
    figure("private_trainer_access_files", len(per_file), [f"{r}: {c}" for r, c in per_file])
    report["private_trainer_access_per_file"] = dict(per_file)

    for key, found in (("private_attributes_by_name", private_by_name(src)),
                       ("helpers_taking_the_trainer", takes_the_trainer(src)),
                       ("packed_assignments_with_a_call", packed_calls(src))):
        report[key + "_list"] = [f"{r}:{ln} {what}" for r, ln, what in found]
        figure(key, len(found), report[key + "_list"])

    graph = import_graph(src)
    cycles = tarjan(graph)
    report["import_cycle_list"] = cycles
    figure("import_cycles", len(cycles), [
        line for scc in cycles for line in ["cycle: " + ", ".join(scc)] + [
            f"  {a} -> {b} (line {ln})" for a in scc for b, ln in sorted(graph[a].items())
            if b in scc]])

    if not args.no_trace:
        try:
            calls, converted, paths, switches = walk_one_batch()
        except Exception as e:  # a package that does not import or fit: parts 1-5 still count
            figure("walk_error", f"{type(e).__name__}: {e}")
        else:
            report_walk(figure, report, calls, converted, paths, switches)
            calls, _, _, switches = walk_one_batch(rows=320)
            figure("epoch_walk_files", len({f for f, _, _ in calls}))
            figure("epoch_walk_functions", len(calls))
            figure("epoch_walk_calls", sum(calls.values()))
            figure("epoch_walk_file_switches", switches)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 1 if "walk_error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
