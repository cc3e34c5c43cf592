"""The package's shape: few top-level modules, no private framework names outside the one
adapter, configs and checkpoints of 0.1 still load, one normalisation, typed router names."""

import ast
import shutil
from pathlib import Path

import pytest
import torch

from cifar_moe.cli import cli_main
from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.data.augment import build_eval_transform
from cifar_moe.data.augment_settings import AugmentSettings
from cifar_moe.data.batch_augment import BatchAugment
from cifar_moe.deploy.inference import UInt8Classifier

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_moe"
ADAPTER = PACKAGE / "core" / "private_api.py"
FIXTURE = Path(__file__).parent / "fixtures" / "v0_1"
FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "torchvision", "torchmetrics",
              "jsonargparse")


def test_top_level_is_a_picture_not_a_list():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


def _private_uses(path: Path) -> list[str]:
    """Underscored names reached on other objects, or imported from a framework."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            own = isinstance(base, ast.Name) and base.id in ("self", "cls")
            # os._exit and argparse's classes are the standard library's, not a framework's
            stdlib = isinstance(base, ast.Name) and base.id in ("os", "argparse")
            formatter = isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super"
            if not (own or stdlib or formatter):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [module or ""] + [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in FRAMEWORKS and any(_private(p) for p in parts[1:]):
                    found.append(f"{path.name}:{node.lineno} import {name}")
            if module and module.split(".")[0] in FRAMEWORKS:
                found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                          if _private(a.name)]
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in
                ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and _private(str(node.args[1].value))):
            found.append(f"{path.name}:{node.lineno} {node.func.id} {node.args[1].value}")
    return found


STDLIB_INHERITED = {"_prog"}  # argparse.HelpFormatter's, which the help formatter extends


def _inherited_private_uses(path: Path) -> list[str]:
    """``self._name`` read in a file that never sets or defines ``_name``: a framework base
    class's private attribute (``self._trainer`` of a LightningModule, say)."""
    own, reads = set(STDLIB_INHERITED), []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            if isinstance(node.ctx, ast.Load):
                reads.append((node.lineno, node.attr))
            else:
                own.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            own.add(node.name)
        elif isinstance(node, (ast.Name, ast.arg)) and not isinstance(
                getattr(node, "ctx", ast.Store()), ast.Load):
            own.add(getattr(node, "id", getattr(node, "arg", "")))  # class-level names
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith(
                "register_") and node.args and isinstance(node.args[0], ast.Constant)):
            own.add(str(node.args[0].value))  # register_buffer("_tau", ...)
    return [f"{path.name}:{line} self.{name}" for line, name in reads if name not in own]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_framework_names_outside_the_adapter():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) if path != ADAPTER
             for use in _private_uses(path) + _inherited_private_uses(path)]
    assert found == []


def test_the_scan_finds_what_it_forbids(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nfrom torch._functorch import config\n"
                      "x = torch._C\nnet._compiled_call_impl = None\n"
                      "getattr(net, '_orig_mod', None)\nself._own = 1\n")
    assert len(_private_uses(sample)) == 4
    inherited = tmp_path / "inherited.py"
    inherited.write_text("class M(LightningModule):\n    _kind = 1\n"
                         "    def f(self):\n        self._own = self._kind\n"
                         "        return self._trainer, self._own, self._helper()\n"
                         "    def _helper(self):\n        return 0\n")
    assert _inherited_private_uses(inherited) == ["inherited.py:5 self._trainer"]
    assert _private_uses(ADAPTER)  # the adapter does use them: they are really there


def test_a_config_and_checkpoint_written_by_0_1_still_load(tmp_path, synthetic_data_dir):
    # Written by the code before the layered redesign (tests/fixtures/v0_1: a tiny routed
    # net, one epoch on the synthetic folder); its config names
    # cifar_moe.training.checkpointing.AtomicCheckpointIO and cifar_moe.models.MoENet.
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    assert "cifar_moe.training.checkpointing.AtomicCheckpointIO" in (
        old / "config.yaml").read_text()
    cli = cli_main(["test", "--config", str(old / "config.yaml"),
                    "--ckpt_path", str(old / "best.ckpt"),
                    f"--data.data_dir={synthetic_data_dir}",
                    f"--trainer.default_root_dir={tmp_path / 'out'}"])
    # The same numbers the 0.1 code gave for this checkpoint on this folder.
    assert float(cli.trainer.callback_metrics["test/loss"]) == pytest.approx(2.312225, abs=1e-5)
    assert float(cli.trainer.callback_metrics["test/acc"]) == pytest.approx(0.1)


def test_loader_device_and_inference_paths_normalise_alike():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)  # (B, 3, H, W)
    loader = torch.stack([build_eval_transform()(image) for image in images])
    no_aug = AugmentSettings(flip_p=0.0, crop_padding=0)
    device = BatchAugment(no_aug)(images)
    inference = normalize_uint8(images)
    assert torch.equal(loader, inference) and torch.equal(device, inference)
    identity = UInt8Classifier(torch.nn.Flatten())  # the exported graph's preprocessing
    assert torch.equal(identity.net(normalize_uint8(images)), inference.flatten(1))


@pytest.mark.parametrize("setting", ["router_aux", "block", "impl"])
def test_unknown_router_block_or_impl_name_lists_the_valid_ones(setting, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", "configs/quickstart.yaml",
                  f"--model.net.init_args.{setting}=nonsense"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    valid = {"router_aux": ["cv2", "entropy", "mutual_info"], "block": ["plain", "residual"],
             "impl": ["mixture", "aggregate", "auto"]}[setting]
    assert all(name in err for name in valid), err
