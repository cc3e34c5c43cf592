"""Config tier: every recipe, control, overlay and study row instantiates through the CLI, and
the recipes' numbers reach the objects they configure."""

import re
from pathlib import Path

import pytest
import torch
import yaml

from cifar_moe.cli.main import cli_main
from cifar_moe.models.presets import preset_spec
from cifar_moe.training.module import LitClassifier

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Full recipes: the top level (the slice recipe too), candidates/ (screened, not adopted; none
# at present) and archive/ (replaced recipes, kept so their studies can be re-run).
FULL = ("candidates", "archive")
RECIPES = sorted(str(p.relative_to(CONFIGS)) for p in [
    *CONFIGS.glob("*.yaml"), *(q for folder in FULL for q in CONFIGS.glob(f"{folder}/*.yaml"))])
CONTROLS = ["controls/k1.yaml", "controls/resnet18.yaml"]
# Every overlay: a YAML in a subfolder of configs/ that is not a study, a sweep (not fit
# configs: test_sweep.py reads them) or a full recipe.
OVERLAYS = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.glob("*/*.yaml")
                  if p.parent.name not in ("studies", "sweeps", *FULL))


def _instantiate(configs: list[str], data_dir: Path):
    args = [a for c in configs for a in ("--config", str(CONFIGS / c))]
    return cli_main([*args, f"--data.data_dir={data_dir}", "--data.val_size=40"], run=False)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_instantiates(recipe, synthetic_data_dir):
    cli = _instantiate([recipe], synthetic_data_dir)
    assert isinstance(cli.model, LitClassifier)
    assert cli.model.class_names == list(cli.datamodule.class_names)
    logits = cli.model.eval()(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)


@pytest.mark.parametrize("control", CONTROLS)
def test_controls_layer_over_a_recipe(control, synthetic_data_dir):
    cli = _instantiate(["focal_onecycle.yaml", control], synthetic_data_dir)
    expected = "CifarResNet18" if "resnet" in control else "MoENet"
    assert type(cli.model.net).__name__ == expected
    if expected == "MoENet":
        assert cli.model.net.num_experts == 1


def test_every_recipe_is_covered():
    assert {"mixup_cosine.yaml", "focal_onecycle.yaml", "quickstart.yaml", "slice.yaml"} <= set(
        RECIPES)
    assert len(OVERLAYS) >= 6 and set(CONTROLS) <= set(OVERLAYS)


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _base_recipe(overlay: str) -> str:
    """The recipe an overlay's usage line layers it over (``--config configs/X --config
    configs/<overlay>``): the slice recipe unless it names another (the archived one)."""
    text = (CONFIGS / overlay).read_text()
    found = re.search(rf"--config configs/(\S+) --config configs/{re.escape(overlay)}", text)
    return found.group(1) if found else "slice.yaml"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_layers_over_the_recipe_its_usage_names(overlay, synthetic_data_dir):
    cli = _instantiate([_base_recipe(overlay), overlay], synthetic_data_dir)
    assert cli.model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for key, value in _leaves(yaml.safe_load((CONFIGS / overlay).read_text())):
        if key == "trainer.callbacks+":  # appended callbacks are instantiated
            names = {type(c).__name__ for c in cli.trainer.callbacks}
            assert {v["class_path"].rpartition(".")[2] for v in value} <= names
        elif key == "model.net":  # a preset path: that preset's network is built
            expected = preset_spec(str(CONFIGS / overlay.rpartition("/")[0] / value))
            assert type(cli.model.net).__name__ == expected["class_path"].rpartition(".")[2]
        else:
            assert cli.config[key] == value, key


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "studies").glob("*.yaml")))
def test_every_row_of_every_study_instantiates(name, synthetic_data_dir, monkeypatch):
    from cifar_moe.runs.study.spec import load_study

    monkeypatch.chdir(CONFIGS.parent)  # the study's paths are relative to the repo root
    study = load_study(f"configs/studies/{name}")
    assert study.rows  # else the loop below checks nothing
    for row in study.rows:
        args = [a for c in row.configs for a in ("--config", str(c))]
        cli = cli_main([*args, *study.args, *row.args, f"--data.data_dir={synthetic_data_dir}",
                        "--data.val_size=40"], run=False)
        assert cli.model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10), row.name


def test_slice_study_compares_the_recipe_with_its_controls_on_unselected_folds(monkeypatch):
    from cifar_moe.runs.study.spec import load_study

    monkeypatch.chdir(CONFIGS.parent)
    study = load_study("configs/studies/slice.yaml")
    names = [row.name for row in study.rows]
    for needed in ("slice recipe", "K=1", "static residual"):
        assert any(needed in name for name in names), needed
    assert all(row.configs[0].resolve() == CONFIGS / "slice.yaml" for row in study.rows)
    # Folds 0-6 selected the recipe (docs/protocols/selection.md): its study uses 7-9.
    assert study.folds == [7, 8, 9] and study.reference.startswith("slice recipe")


def test_the_slice_recipe_is_the_archived_one_plus_the_adopted_changes(synthetic_data_dir):
    """configs/slice.yaml is configs/archive/slice_v2.yaml with TrivialAugment, routing in
    block 5 only and 72 epochs (docs/studies/selection/trivial_augment_block5.md), nothing
    else: the archive keeps the recipe the routing study registered. Config and preset paths
    aside (``config``, ``model.net.__path__``)."""
    new, old = (dict(_leaves(_instantiate([c], synthetic_data_dir).config.as_dict()))
                for c in ("slice.yaml", "archive/slice_v2.yaml"))
    changed = {k: (old.get(k), new.get(k)) for k in old.keys() | new.keys()
               if k not in ("config", "model.net.__path__") and old.get(k) != new.get(k)}
    assert changed == {"trainer.max_epochs": (78, 72),
                       "data.augment.trivial_augment": (False, True),
                       "model.net.init_args.routed_blocks": ([3, 5], [5])}


def test_recipe_numbers_reach_the_objects(synthetic_data_dir):
    cli = _instantiate(["focal_onecycle.yaml"], synthetic_data_dir)
    model = cli.model
    cat = model.class_names.index("cat")
    assert model.loss_fn.class_weights[cat].item() == pytest.approx(1.2)
    assert model.loss_fn.gamma == 2.0 and model.loss_fn.label_smoothing == 0.1
    assert model.loss_fn.form == "smoothed_ce"
    assert cli.datamodule.hparams.batch_size == 128
    assert cli.trainer.max_epochs == 200
