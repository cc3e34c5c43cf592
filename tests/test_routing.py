"""Routing analytics and remedies: metrics on hand-made weights, schedule, regulariser, CLI."""

from pathlib import Path

import pytest
import torch
from tiny_run import TINY_NET

from cifar_moe.analysis.routing.analytics import RoutingAnalytics
from cifar_moe.analysis.routing.stats import HEALTH_BAR, summarize
from cifar_moe.cli.main import cli_main
from cifar_moe.models import MoENet, Router
from cifar_moe.models.penalties import balance_penalty
from cifar_moe.models.router import find_routers
from cifar_moe.runs.listing import latest_run, read_image_tags, read_scalars
from cifar_moe.training.temperature import TemperatureSchedule

K = 4
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_uniform_routing():
    m = summarize(torch.full((32, K), 1 / K))
    assert m["entropy"] == pytest.approx(1) and m["balance"] == pytest.approx(1)
    assert m["mutual_info"] == pytest.approx(0, abs=1e-6)
    assert m["max_share"] == pytest.approx(1 / K) and m["dead_fraction"] == 0
    assert m["importance_cv2"] == pytest.approx(0, abs=1e-9)


def test_one_hot_balanced_routing_has_full_mutual_information():
    m = summarize(torch.eye(K).repeat(8, 1))  # each sample picks one expert, all used
    assert m["entropy"] == pytest.approx(0, abs=1e-6) and m["balance"] == pytest.approx(1)
    assert m["mutual_info"] == pytest.approx(1)


def test_collapse_onto_one_expert():
    weights = torch.zeros(16, K)
    weights[:, 2] = 1
    m = summarize(weights)
    assert m["max_share"] == pytest.approx(1)
    assert m["dead_fraction"] == pytest.approx((K - 1) / K)
    assert m["balance"] == pytest.approx(0, abs=1e-6)
    assert m["importance_cv2"] == pytest.approx(K - 1)


def test_temperature_schedule_end_points():
    schedule = TemperatureSchedule(tau0=30, tau1=1, epochs=10)
    assert schedule.tau_at(0) == 30 and schedule.tau_at(10) == 1 and schedule.tau_at(50) == 1
    assert schedule.tau_at(5) == pytest.approx(15.5)


@pytest.mark.parametrize("kind", ["cv2", "entropy", "mutual_info"])
def test_balance_penalty_zero_at_balance_and_has_gradient(kind):
    balanced = torch.eye(K).repeat(4, 1)
    assert balance_penalty(balanced, kind).item() == pytest.approx(0, abs=1e-6)
    logits = torch.randn(16, K, requires_grad=True)
    penalty = balance_penalty(logits.softmax(dim=1), kind)
    penalty.backward()
    assert penalty > 0 and logits.grad.abs().sum() > 0


def test_mutual_info_penalty_prefers_confident_balanced_routing():
    one_hot = torch.eye(K).repeat(4, 1)
    uniform = torch.full((16, K), 1 / K)
    collapsed = torch.zeros(16, K)
    collapsed[:, 0] = 1
    assert balance_penalty(one_hot, "mutual_info").item() == pytest.approx(0, abs=1e-6)
    assert balance_penalty(uniform, "mutual_info").item() == pytest.approx(1, abs=1e-6)
    assert balance_penalty(collapsed, "mutual_info").item() == pytest.approx(1, abs=1e-6)


def test_default_router_starts_uniform_and_old_one_does_not():
    torch.manual_seed(0)
    x = torch.rand(32, 16, 4, 4) + 1.0  # post-ReLU-like: positive with a shared mean
    assert torch.allclose(Router(16, K)(x), torch.full((32, K), 1 / K))
    old = Router(16, K, input_norm=False, zero_init=False, logit_norm=False)
    assert not torch.allclose(old(x), torch.full((32, K), 1 / K))


def test_logit_norm_removes_the_shared_preference():
    """Logits with a large common offset still give balanced routing once standardised."""
    torch.manual_seed(0)
    router = Router(16, K, zero_init=False)
    with torch.no_grad():
        router.mlp[3].weight.add_(torch.tensor([[4.0], [0.0], [0.0], [0.0]]))  # prefer expert 0
    weights = router(torch.randn(256, 16, 4, 4))
    assert summarize(weights)["balance"] > 0.9
    old = Router(16, K, zero_init=False, logit_norm=False)
    with torch.no_grad():
        old.mlp[3].weight.add_(torch.tensor([[4.0], [0.0], [0.0], [0.0]]))
    assert summarize(old(torch.randn(256, 16, 4, 4)))["balance"] < 0.5


def test_router_aux_loss_reaches_the_router_and_is_read_once():
    from cifar_moe.models import MoENet

    net = MoENet(stem_width=8, widths=[8, 16], pool_after=[0, 1], router_aux="mutual_info",
                 router_aux_weight=0.1).train()
    net(torch.randn(8, 3, 32, 32))
    aux = net.aux_loss()
    aux.backward()
    assert aux > 0 and net.aux_loss() is None
    assert all(r.mlp[3].weight.grad is not None for r in find_routers(net))
    net.eval()(torch.randn(8, 3, 32, 32))
    assert net.aux_loss() is None  # evaluation adds nothing


def test_router_tau_is_saved_in_its_state():
    router = Router(8, K)
    router.tau = 7.5
    fresh = Router(8, K)
    fresh.load_state_dict(router.state_dict())
    assert fresh.tau == 7.5


@pytest.mark.slow
def test_cli_fit_writes_routing_tags_and_class_expert_image(synthetic_data_dir, tmp_path):
    cli_main([
        "fit", "--config", str(CONFIGS / "focal_onecycle.yaml"),
        "--config", str(CONFIGS / "routing" / "anneal_balance.yaml"),
        *TINY_NET,
        f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40", "--data.num_workers=0",
        "--data.batch_size=16", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=4",
        "--model.scheduler.init_args.pct_start=0.5",  # OneCycle needs 2+ warm-up steps
        "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
    ])
    run = latest_run(tmp_path / "lightning_logs")
    scalars = read_scalars(run)
    for metric in ("entropy", "balance", "mutual_info", "max_share", "dead_fraction",
                   "importance_cv2", "expert_spread"):
        assert f"route/block1/{metric}" in scalars
    # Independently drawn experts start about 1 apart: far from copies (0) after 4 steps.
    assert 0.5 < scalars["route/block1/expert_spread"][-1][1] < 3
    taus = [v for _, v in scalars["route/tau"]]
    assert taus[0] == pytest.approx(30) and taus[-1] < 30
    assert "train/aux_loss" in scalars  # the overlay's balance penalty reached the loss
    assert "route/block0/class_expert" in read_image_tags(run)


def test_analytics_name_routed_blocks_by_their_position_in_the_network():
    net = MoENet(widths=[8, 16, 16, 16], pool_after=[0], routed_blocks=[1, 3])
    callback = RoutingAnalytics()
    callback.setup(None, net, "fit")
    assert callback.labels == ["block1", "block3"]
    assert callback.experts == [net.blocks[2].experts, net.blocks[4].experts]  # after a pool
    every = RoutingAnalytics()
    every.setup(None, MoENet(widths=[8, 16], pool_after=[0]), "fit")
    assert every.labels == ["block0", "block1"]


def test_running_stats_equal_the_whole_batch_and_give_the_class_matrix():
    torch.manual_seed(0)
    from cifar_moe.analysis.routing.stats import RoutingStats

    weights = torch.randn(40, K).softmax(dim=1)
    labels = torch.randint(0, 3, (40,))
    stats = RoutingStats(K, num_classes=3)
    stats.update(weights[:15], labels[:15])
    stats.update(weights[15:], labels[15:])
    whole = summarize(weights)
    assert stats.summary() == pytest.approx(whole)
    expected = torch.stack([weights[labels == c].mean(dim=0) for c in range(3)])  # (C, K)
    torch.testing.assert_close(stats.class_matrix(), expected)


def test_the_health_bar_names_each_block_metric_below_it():
    uniform = summarize(torch.full((64, 2), 0.5))  # balanced, but the same for every image
    logged = {f"route/block1/{k}": v for k, v in uniform.items()} | {
        "route/block3/balance": 0.85, "route/block3/mutual_info": 0.05,  # 0.05 is on the bar
        "route/block3/dead_fraction": 0.5, "route/tau": 0.01}
    assert HEALTH_BAR.failures(logged) == [
        "block1 mutual_info 0.000", "block3 balance 0.850", "block3 dead_fraction 0.500"]
    assert str(HEALTH_BAR) == "dead_fraction 0, balance >= 0.9, mutual_info >= 0.05"
