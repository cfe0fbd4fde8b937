"""The package keeps the shape docs/architecture.md describes (read from the source, no TensorFlow).

The figures come from ``benchmarks/architecture.py``, which prints them all.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("architecture", ROOT / "benchmarks" / "architecture.py")
architecture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(architecture)


@pytest.fixture(scope="module")
def sources():
    return architecture.sources()


def test_no_import_cycles_between_package_modules(sources):
    assert architecture.tarjan(architecture.import_graph(sources)) == []


def test_only_the_trainer_touches_its_private_attributes(sources):
    assert [f"{path}:{line} {expr}" for path, line, expr, _ in
            architecture.private_access(sources)] == []


def test_no_function_is_longer_than_a_screen(sources):
    long = [f"{path}:{name}" for path, (_, tree) in sources.items()
            for name, node in architecture.functions(tree)
            if node.end_lineno - node.lineno + 1 > architecture.LONG]
    assert long == []


def test_the_trainer_file_stays_short():
    assert len((ROOT / "kerastrainer" / "trainer.py").read_text().splitlines()) <= 400


def test_the_checks_see_a_cycle_and_a_private_access(tmp_path, monkeypatch):
    package = tmp_path / "kerastrainer"
    (package / "callbacks").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "callbacks" / "__init__.py").write_text("from kerastrainer.callbacks.a import A\n")
    (package / "callbacks" / "a.py").write_text(
        "class A:\n    def f(self, trainer):\n        from kerastrainer import b\n"
        "        return trainer._bus\n")
    (package / "b.py").write_text("from kerastrainer.callbacks import A\n")
    (package / "trainer.py").write_text("")
    monkeypatch.setattr(architecture, "ROOT", str(tmp_path))
    monkeypatch.setattr(architecture, "PKG", str(package))
    found = architecture.sources()
    assert architecture.tarjan(architecture.import_graph(found)) == [
        ["kerastrainer.b", "kerastrainer.callbacks", "kerastrainer.callbacks.a"]]
    assert [expr for _, _, expr, _ in architecture.private_access(found)] == ["trainer._bus"]
