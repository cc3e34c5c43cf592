"""The routing study (issue 34): its matched static rows match the routed recipe's training
FLOPs (in the implementation the recipe runs on the CPU) and parameters within 2 %, and its
rows are the protocol's, with the fold and seed layout the issue asks for."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import count_flops  # noqa: E402

from cifar_moe.models.expert_conv import AUTO_MIN_PIXELS, ExpertConv2d  # noqa: E402
from cifar_moe.runs.study.spec import load_study  # noqa: E402

STUDY = "configs/studies/routing.yaml"
ROWS = ["routed", "static_flops", "static_k1", "k4", "diverge", "top1", "anneal",
        "static_params", "residual_static"]


@pytest.fixture(scope="module")
def counts():
    specs = count_flops.study_specs(STUDY)
    return {name: count_flops.count(specs[name])
            for name in ("routed", "static_flops", "static_params")}


@pytest.mark.slow
def test_static_flops_matches_the_routed_recipe(counts):
    ratio = counts["static_flops"]["mixture"] / counts["routed"]["mixture"]
    assert abs(ratio - 1) <= 0.02, ratio
    assert counts["static_flops"]["mixture"] == counts["static_flops"]["aggregate"]  # K = 1


@pytest.mark.slow
def test_static_params_matches_the_routed_recipe(counts):
    ratio = counts["static_params"]["params"] / counts["routed"]["params"]
    assert abs(ratio - 1) <= 0.02, ratio


# The study's recipe (routed blocks 3 and 5) and the recipe adopted after it (block 5 only).
@pytest.mark.parametrize(("config", "pixels"), [("configs/archive/slice_v2.yaml", [7, 3]),
                                                ("configs/slice.yaml", [3])])
def test_the_recipe_runs_mixture_on_the_cpu_at_its_routed_blocks(config, pixels):
    """impl auto picks mixture below 16x16 pixels, where every routed block runs."""
    net = count_flops.build(count_flops.net_spec([config]))
    seen = []
    for module in net.modules():
        if isinstance(module, ExpertConv2d) and module.num_experts > 1:
            assert module.impl == "auto"
            module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    net.eval()(torch.zeros(2, 3, 32, 32))
    assert seen == pixels  # the whitening stem's 2x2 unpadded conv: 31 pixels, then pools
    assert all(px * px < AUTO_MIN_PIXELS for px in seen)


def test_training_flops_counts_forward_and_backward():
    """A single linear layer: forward 2*in*out per image; backward the same again (only the
    weight's gradient: the input needs none)."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10, bias=False))
    flops = count_flops.training_flops(net, "mixture", batch=4)
    assert flops == 2 * 3 * 32 * 32 * 10 * 2


def test_the_study_has_the_protocols_rows_and_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    study = load_study(STUDY)
    assert [row.name for row in study.rows] == ROWS
    by_name = {row.name: row for row in study.rows}
    for name in ("routed", "static_flops"):
        assert list(by_name[name].folds) == list(range(10))
        assert list(by_name[name].seeds) == [0, 1]
    for name in ROWS[2:]:
        assert list(by_name[name].folds) == [7, 8, 9] and list(by_name[name].seeds) == [0]
    assert (study.metric, study.reference, study.primary) == (
        "final_val_acc", "static_flops", "routed")
    # Registered on the recipe of its time, kept unchanged as configs/archive/slice_v2.yaml.
    assert {row.configs[0].resolve() for row in study.rows} == {
        ROOT / "configs" / "archive" / "slice_v2.yaml"}


@pytest.mark.parametrize("fraction", [25, 50])
def test_the_data_size_curve_reruns_the_primary_pair_on_a_share_of_each_fold(monkeypatch,
                                                                           fraction):
    monkeypatch.chdir(ROOT)
    main = {row.name: row for row in load_study(STUDY).rows}
    curve = load_study(f"configs/studies/routing_data{fraction}.yaml")
    # The same two rows (their 100 % runs are the main study's, on the same folds and seed).
    assert [(row.name, row.configs, row.args) for row in curve.rows] == [
        (name, main[name].configs, main[name].args) for name in ("routed", "static_flops")]
    assert curve.folds == [6, 7, 8, 9] and curve.seeds == [0]
    assert set(curve.folds) <= set(main["routed"].folds) and 0 in main["routed"].seeds
    assert curve.args == [f"--data.train_fraction={fraction / 100:g}"]
    assert (curve.metric, curve.reference, curve.primary) == ("final_val_acc", "static_flops",
                                                              "routed")
