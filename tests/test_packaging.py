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
