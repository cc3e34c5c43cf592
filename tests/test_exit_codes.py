"""Exit status: 0 on success (console script too), 143 on SIGTERM, 130 on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interruptible import sigint_as_in_a_terminal

from tests.test_reliability import _args

REPO = Path(__file__).resolve().parents[1]
# Exactly what the `cifar-moe` console script's generated wrapper does.
CONSOLE_SCRIPT = "import sys; from cifar_moe.cli.main import main; sys.exit(main())"


def _start(code: str, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=sigint_as_in_a_terminal)


def test_console_script_points_at_main():
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    assert 'cifar-moe = "cifar_moe.cli:main"' in lines


@pytest.mark.slow
def test_console_script_exits_0_after_a_fit(synthetic_data_dir, tmp_path):
    child = _start(CONSOLE_SCRIPT, _args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=2"))
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_fit_exits_with_the_signal_status(sig, code, synthetic_data_dir, tmp_path):
    child = _start(CONSOLE_SCRIPT, _args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=500"))
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("lightning_logs/*/*/checkpoints/last.ckpt")):
        assert child.poll() is None and time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.2)
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode == code, err[-2000:]
    assert "Exact resume: --ckpt_path" in err
    assert "Traceback" not in err
