"""Types: the package and the examples pass mypy (a wrong public signature, or a call that does
not fit one, fails here), and every public function and method is annotated."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import kerastrainer as kt

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = ("callbacks", "loggers", "data", "lr")


def _public_objects():
    seen = {}
    for name in kt.__all__:
        value = getattr(kt, name)
        if inspect.ismodule(value):
            for inner in getattr(value, "__all__", ()):
                seen[f"kt.{name}.{inner}"] = getattr(value, inner)
        else:
            seen[f"kt.{name}"] = value
    return seen


def _callables(path, value):
    if inspect.isfunction(value):
        yield path, value
    elif inspect.isclass(value):
        for name, member in vars(value).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if inspect.isfunction(member):
                yield f"{path}.{name}", member


def _missing(function) -> list[str]:
    signature = inspect.signature(function)
    missing = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_every_public_function_and_method_is_annotated():
    unannotated = {path: missing for name, value in _public_objects().items()
                   for path, function in _callables(name, value)
                   if (missing := _missing(function))}
    assert not unannotated, "\n".join(f"{p}: {m}" for p, m in sorted(unannotated.items()))


@pytest.mark.slow
def test_the_package_and_the_examples_pass_mypy():
    result = subprocess.run([sys.executable, "-m", "mypy", "kerastrainer", "examples"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
