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


def _class_names(cls: ast.ClassDef) -> tuple[set[str], list[tuple[int, str]]]:
    """(names the class itself defines, ``self._x`` reads in its methods)."""
    own, reads = set(), []
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            own.add(item.name)
        for target in getattr(item, "targets", [getattr(item, "target", None)]):
            if isinstance(target, ast.Name):
                own.add(target.id)  # class-level names
    for node in ast.walk(cls):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            if isinstance(node.ctx, ast.Load):
                reads.append((node.lineno, node.attr))
            else:
                own.add(node.attr)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith(
                "register_") and node.args and isinstance(node.args[0], ast.Constant)):
            own.add(str(node.args[0].value))  # register_buffer("_tau", ...)
    return own, reads


def _inherited_private_uses(path: Path) -> list[str]:
    """``self._name`` read in a class that neither sets nor defines ``_name`` (nor does a
    base class in the same file): a framework base class's private attribute
    (``self._trainer`` of a LightningModule, say)."""
    classes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)]
    names = {cls.name: _class_names(cls) for cls in classes}
    found = []
    for cls in classes:
        own, reads = set(STDLIB_INHERITED) | names[cls.name][0], names[cls.name][1]
        for base in cls.bases:  # a base class of this file: its names are the class's own
            own |= names.get(getattr(base, "id", ""), (set(), []))[0]
        found += [f"{path.name}:{line} self.{name}" for line, name in reads if name not in own]
    return found


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
                         "    def _helper(self):\n        return 0\n"
                         "class N(M):\n    def g(self):\n        return self._own, self._x\n"
                         "class O:\n    def _trainer(self):\n        return 0\n")
    # N inherits M's names; O's method of the same name does not excuse M's read
    assert _inherited_private_uses(inherited) == ["inherited.py:5 self._trainer",
                                                  "inherited.py:10 self._x"]
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
