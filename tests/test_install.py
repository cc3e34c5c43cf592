"""The package works installed: a wheel, installed into a fresh folder, builds its presets
with no checkout on the path (the checkout's own editable install is bypassed)."""

import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_models import PARAMETERS

from cifar_moe.models.presets import available_presets

REPO_ROOT = Path(__file__).resolve().parents[1]

# Run with -I -S: no cwd, no PYTHON* variables and no .pth files (so no editable-install
# finder) on the path; only the installed wheel, then the venv's third-party packages.
CHILD = """
import json, sys
target, deps = sys.argv[1], sys.argv[2:]
sys.path[:0] = [target, *deps]
import cifar_moe.models.presets as presets
net = presets.build_net("seed_b")
print(json.dumps({"file": presets.__file__, "presets": presets.available_presets(),
                  "parameters": sum(p.numel() for p in net.parameters()), "path": sys.path}))
"""


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q"],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the sources, so the build writes nothing into the checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "cifar_moe", src / "cifar_moe",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _pip("wheel", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("cifar_moe-*.whl")
    return wheel


@pytest.mark.slow
def test_installed_wheel_builds_seed_b_from_its_packaged_preset(tmp_path):
    wheel = _build_wheel(tmp_path)
    shipped = {Path(n).name for n in zipfile.ZipFile(wheel).namelist()
               if n.startswith("cifar_moe/models/presets/") and n.endswith(".yaml")}
    assert shipped == {f"{name}.yaml" for name in available_presets()}
    target, outside = tmp_path / "site", tmp_path / "elsewhere"
    outside.mkdir()
    _pip("install", "--no-compile", "--target", str(target), str(wheel), cwd=tmp_path)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD, str(target),
                           *site.getsitepackages()],
                          cwd=outside, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert Path(result["file"]).is_relative_to(target)  # the wheel's copy, not the checkout's
    assert str(REPO_ROOT) not in result["path"] and "" not in result["path"]
    assert result["presets"] == available_presets()
    assert result["parameters"] == PARAMETERS["seed_b"]
