"""The built wheel, not the checkout, installs and trains: run from outside the repository."""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# Building a wheel writes build/ in the checkout: with several test processes, one of them builds.
pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (found,) = out.glob("kerastrainer-*.whl")
    return found


def test_the_wheel_holds_the_package_its_license_and_type_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "kerastrainer/py.typed" in names and "kerastrainer/trainer.py" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]


@pytest.mark.slow
def test_the_installed_wheel_trains_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # Dependencies come from this test environment (no download); kerastrainer from the wheel.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    script = (
        "import kerastrainer as kt, keras, numpy as np\n"
        "assert kt.__file__.startswith(%r), kt.__file__\n"
        "class M(kt.TrainModule):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.d = keras.layers.Dense(1)\n"
        "    def call(self, x, training=False): return self.d(x)\n"
        "    def loss(self, y, p): return keras.losses.mean_squared_error(y, p)\n"
        "    def configure_optimizer(self): return keras.optimizers.SGD(0.1)\n"
        "x = np.ones((16, 2), 'float32')\n"
        "t = kt.Trainer(max_epochs=2, enable_progress_bar=False, logger=False)\n"
        "t.fit(M(), train_data=(x, x[:, :1]))\n"
        "print('trained', t.global_step)\n") % str(env_dir)
    done = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained 2" in done.stdout
    cli = subprocess.run([str(env_dir / "bin" / "kerastrainer"), "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.startswith("kerastrainer ")
    example = subprocess.run([str(python), str(ROOT / "examples" / "linear_map.py"), "--epochs", "2"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert example.returncode == 0, example.stderr[-2000:]


_GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("n", range(6))
def test_grouped(n):
    with open(os.path.join(os.environ["GROUP_OUT"], f"ran-{n}"), "w") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("n", range(6))
def test_free(n):
    pass
"""


def test_xdist_groups_keep_their_tests_on_one_worker(tmp_path):
    """make test runs `-n auto --dist loadgroup`: a module-scoped fixture of a grouped module (a
    multi-process run, the wheel build) must run once, on one worker, not once per worker."""
    (tmp_path / "test_grouped.py").write_text(_GROUPED)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                             "-p", "no:cacheprovider", "test_grouped.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, GROUP_OUT=str(tmp_path)))
    assert result.returncode == 0, result.stdout[-3000:]
    workers = {(tmp_path / f"ran-{n}").read_text() for n in range(6)}
    assert len(workers) == 1, workers
