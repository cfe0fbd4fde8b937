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


#: Private attributes of other libraries' objects that kerastrainer reads by name, each for a reason:
#: a namedtuple's field list (its documented protocol), a Keras metric's direction (what Keras's own
#: monitoring callbacks read), a Keras optimizer's schedule, and TensorFlow's iterator resource and
#: dataset graph (saving an input pipeline's state, finding its buffers).
THIRD_PARTY_PRIVATE = {"_fields", "_direction", "_learning_rate", "_iterator_resource", "_datasets",
                       "_input_dataset", "_buffer_size"}


def test_no_private_attribute_of_kerastrainer_is_read_by_name(sources):
    found = architecture.private_by_name(sources)
    assert [f"{path}:{line} {call}" for path, line, call in found
            if not any(f"'{name}'" in call for name in THIRD_PARTY_PRIVATE)] == []


def test_helpers_are_built_from_explicit_values_not_from_the_trainer(sources):
    assert [f"{path}:{line} {name}" for path, line, name in architecture.takes_the_trainer(sources)] == []


def test_no_packed_assignment_hides_a_call(sources):
    assert [f"{path}:{line} {text}" for path, line, text in architecture.packed_calls(sources)] == []


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


def test_the_checks_see_a_trainer_helper_a_private_getattr_and_a_packed_call(tmp_path, monkeypatch):
    package = tmp_path / "kerastrainer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "trainer.py").write_text("")
    (package / "plan.py").write_text(
        "class Plan:\n"
        "    @classmethod\n"
        "    def for_fit(cls, trainer):\n"
        "        a, b = trainer.flags, len(trainer.callbacks)\n"
        "        return getattr(trainer, '_steps')\n"
        "    def on_fit_start(self, trainer):\n"
        "        x, y = 1, 2\n")
    monkeypatch.setattr(architecture, "ROOT", str(tmp_path))
    monkeypatch.setattr(architecture, "PKG", str(package))
    found = architecture.sources()
    assert [name for _, _, name in architecture.takes_the_trainer(found)] == ["Plan.for_fit"]
    assert [call for _, _, call in architecture.private_by_name(found)] == ["getattr(trainer, '_steps')"]
    assert [line for _, line, _ in architecture.packed_calls(found)] == [4]
