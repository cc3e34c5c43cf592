"""Issue 7 switches: the device data path matches the classic one in distribution; bf16,
channels_last and torch.compile leave the network's outputs close to fp32 eager."""

import math
from pathlib import Path

import pytest
import torch
from tiny_run import TINY_NET

from cifar_moe.cli.main import cli_main
from cifar_moe.data import CIFAR10DataModule
from cifar_moe.data.augment import build_train_transform
from cifar_moe.data.augment_settings import AugmentSettings
from cifar_moe.data.batch_augment import BatchAugment
from cifar_moe.models import MoENet
from cifar_moe.runs.listing import latest_run, read_scalars

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N = 2000
OFF = {"flip_p": 0.0, "crop_padding": 0}


def _both_paths(image: torch.Tensor, n: int = N, **aug) -> tuple[torch.Tensor, torch.Tensor]:
    """n augmented copies of one uint8 image through each path, as normalised floats."""
    torch.manual_seed(0)
    settings = AugmentSettings(**aug)  # one object for both paths, as the data module does
    per_image = build_train_transform(settings)
    classic = torch.stack([per_image(image) for _ in range(n)])
    device = BatchAugment(settings)(image.expand(n, -1, -1, -1))
    return classic, device


def _marker_image() -> torch.Tensor:
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    image[:, 16, 16] = 255  # one bright pixel: its position reveals flips and offsets
    image[:, 16, 17] = 0
    return image


def _marker_columns(batch: torch.Tensor) -> torch.Tensor:
    flat = batch[:, 0].flatten(1).argmax(dim=1)
    return flat % 32, flat // 32


def test_flip_rate_matches():
    classic, device = _both_paths(_marker_image(), flip_p=0.3, crop_padding=0)
    for batch in (classic, device):
        cols, _ = _marker_columns(batch)
        flipped = (cols == 15).float().mean().item()  # 16 -> 31 - 16
        assert flipped == pytest.approx(0.3, abs=0.04)


def test_crop_offsets_match():
    classic, device = _both_paths(_marker_image(), flip_p=0.0, crop_padding=4)
    stats = []
    for batch in (classic, device):
        cols, rows = _marker_columns(batch)
        shift = torch.cat([cols, rows]).float() - 16
        assert shift.min() == -4 and shift.max() == 4  # every offset in [0, 2p] is reached
        stats.append((shift.mean().item(), shift.std().item()))
    for mean, std in stats:
        assert mean == pytest.approx(0, abs=0.15)
        assert std == pytest.approx((80 / 12) ** 0.5, abs=0.15)  # uniform on 9 values


@pytest.mark.parametrize("kind", ["brightness", "contrast", "saturation"])
def test_jitter_factor_ranges_match(kind):
    gen = torch.Generator().manual_seed(1)
    image = torch.randint(40, 200, (3, 32, 32), generator=gen, dtype=torch.uint8)
    classic, device = _both_paths(image, **OFF, **{kind: 0.4})
    base = build_train_transform(AugmentSettings(**OFF))(image)
    spread = [(b - base).flatten(1).std(dim=1) for b in (classic, device)]
    # Same factor distribution -> same distribution of how far each copy moved.
    for q in (0.1, 0.5, 0.9):
        expected = spread[1].quantile(q).item()
        assert spread[0].quantile(q).item() == pytest.approx(expected, rel=0.12, abs=0.01)


def test_hue_and_rotation_change_images_like_the_classic_path():
    gen = torch.Generator().manual_seed(2)
    image = torch.randint(0, 255, (3, 32, 32), generator=gen, dtype=torch.uint8)
    for aug in ({"hue": 0.1}, {"rotation_degrees": 10.0}):
        classic, device = _both_paths(image, n=400, **OFF, **aug)  # per-image rotation is slow
        base = build_train_transform(AugmentSettings(**OFF))(image)
        moved = [(b - base).abs().mean().item() for b in (classic, device)]
        assert moved[0] > 0.01 and moved[1] == pytest.approx(moved[0], rel=0.2)


def test_device_path_in_the_datamodule(synthetic_data_dir):
    dm = CIFAR10DataModule(data_dir=str(synthetic_data_dir), val_size=40, batch_size=32,
                           num_workers=0, device_augment=True, augment=AugmentSettings(**OFF))
    dm.setup("fit")
    indices = next(iter(dm.train_dataloader()))
    assert indices.dtype == torch.int64 and indices.shape == (32,)
    images, labels = dm.on_after_batch_transfer(indices, 0)
    stored = dm.datasets["train"]
    torch.testing.assert_close(images, torch.stack([dm.eval_transform(stored.images[i])
                                                    for i in indices]))
    assert torch.equal(labels, stored.labels[indices])
    val_batch = next(iter(dm.val_dataloader()))
    assert dm.on_after_batch_transfer(val_batch, 0) is val_batch


def _small_net(impl):
    torch.manual_seed(0)
    return MoENet(stem_width=8, widths=[16, 32], pool_after=[0], num_experts=3,
                  block="residual", impl=impl).eval()


@pytest.mark.parametrize("impl", ["mixture", "aggregate"])
def test_bf16_and_channels_last_close_to_fp32(impl):
    net = _small_net(impl)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        reference = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x).float()
        net_cl = net.to(memory_format=torch.channels_last)
        cl = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, reference, atol=1e-4, rtol=1e-4)
    assert (bf16 - reference).abs().max() < 0.05 * reference.abs().max() + 0.05


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["mixture", "aggregate"])
def test_compile_matches_eager(impl):
    net = _small_net(impl)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(net)(x), net(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_cli_fit_with_device_path_bf16_channels_last(synthetic_data_dir, tmp_path):
    cli_main([
        "fit", "--config=configs/quickstart.yaml", f"--data.data_dir={synthetic_data_dir}",
        "--data.val_size=40", "--data.num_workers=0", "--data.batch_size=16",
        "--data.device_augment=true", "--model.channels_last=true",
        "--trainer.precision=bf16-mixed", *TINY_NET,
        f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
    ])
    scalars = read_scalars(latest_run(tmp_path / "lightning_logs"))
    assert scalars["train/loss"] and all(math.isfinite(v) for _, v in scalars["train/loss"])


@pytest.mark.slow
def test_fast_gpu_recipe_runs_a_few_batches_on_cpu(synthetic_data_dir, tmp_path):
    """configs/fast_gpu.yaml (full CIFAR-10 on one GPU) trains and validates here on CPU."""
    cli = cli_main([
        "fit", "--config", str(CONFIGS / "fast_gpu.yaml"), f"--data.data_dir={synthetic_data_dir}",
        "--data.val_size=40", "--data.batch_size=16", "--data.num_workers=0",
        "--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ])
    assert cli.trainer.global_step == 3 and cli.model.cuda_graphs is False
    scalars = read_scalars(latest_run(tmp_path / "lightning_logs"))
    assert math.isfinite(scalars["train/loss"][-1][1]) and "val/acc" in scalars


def _switches(monkeypatch, facts, **settings):
    """A LitClassifier's configure_model on ``facts``, recording net.compile's arguments."""
    from cifar_moe.training.auto_settings import apply_speed_settings
    from cifar_moe.training.module import LitClassifier

    module = LitClassifier(_small_net("mixture"), channels_last=False, **settings)
    calls = []
    monkeypatch.setattr(module.net, "compile", lambda **kw: calls.append(kw))
    apply_speed_settings(module, facts)
    return module, calls


def test_cuda_graphs_is_off_by_default_and_compiles_reduce_overhead_when_on(monkeypatch):
    from cifar_moe.core.hardware import DeviceFacts

    gpu = DeviceFacts("cuda", "H100", bf16=True)
    module, calls = _switches(monkeypatch, gpu)
    assert module.cuda_graphs is False and calls == [{}]  # compile auto: plain mode
    module, calls = _switches(monkeypatch, gpu, cuda_graphs=True)
    assert module.cuda_graphs is True
    assert calls == [{"mode": "reduce-overhead", "dynamic": False}]


def test_cuda_graphs_off_on_cpu_and_refused_without_compile(monkeypatch, capsys):
    from cifar_moe.core.errors import UserError
    from cifar_moe.core.hardware import CPU

    module, calls = _switches(monkeypatch, CPU, cuda_graphs=True, compile=True)
    assert module.cuda_graphs is False and calls == [{}]
    assert "cuda_graphs applies to a CUDA device only" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"model\.cuda_graphs needs model\.compile"):
        _switches(monkeypatch, CPU, cuda_graphs=True, compile=False)


def test_cuda_graphs_forward_returns_a_copy_of_the_logits():
    from cifar_moe.training.module import LitClassifier

    module = LitClassifier(_small_net("mixture"), channels_last=False)
    x = torch.randn(2, 3, 32, 32)
    module.eval()
    plain = module(x)
    module.cuda_graphs = True  # the output of a replayed graph is cloned before use
    torch.testing.assert_close(module(x), plain)


def test_compile_also_fuses_the_focal_loss_and_the_mix():
    """model.compile compiles the step's own tensor work too (about 40 eager ops each for a
    focal loss and a mixup/cutmix mix, about ten for smoothed cross-entropy)."""
    from cifar_moe.core.hardware import CPU
    from cifar_moe.core.private_api import is_compiled
    from cifar_moe.training.auto_settings import apply_speed_settings
    from cifar_moe.training.module import LitClassifier

    focal = LitClassifier(_small_net("mixture"), loss="focal", mixup_alpha=0.2,
                          cutmix_alpha=1.0, compile=True)
    apply_speed_settings(focal, CPU)
    assert is_compiled(focal.net) and is_compiled(focal.loss_fn)
    assert is_compiled(focal.mixer.blend)
    ce = LitClassifier(_small_net("mixture"), label_smoothing=0.1, compile=True)
    apply_speed_settings(ce, CPU)
    assert is_compiled(ce.loss_fn)
    plain = LitClassifier(_small_net("mixture"), compile=False)
    apply_speed_settings(plain, CPU)
    assert not is_compiled(plain.mixer.blend) and not is_compiled(plain.net)
    assert not is_compiled(plain.loss_fn)


@pytest.mark.slow
@pytest.mark.parametrize("cutmix_prob", [0.0, 0.5, 1.0])
def test_the_compiled_mix_and_focal_loss_match_eager(cutmix_prob):
    from cifar_moe.training.losses import FocalLoss
    from cifar_moe.training.mixing import BatchMixer

    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    mixer = BatchMixer(10, mixup_alpha=0.2, cutmix_alpha=1.0 if cutmix_prob else 0.0,
                       cutmix_prob=cutmix_prob or 0.5)
    results = []
    for compiled in (False, True):
        if compiled:
            mixer.compile()
        torch.manual_seed(3)  # the same draws both ways
        results.append(mixer(images, labels))
    for eager, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, eager)
    loss = FocalLoss(10, label_smoothing=0.1, form="smoothed_ce")
    logits = torch.randn(8, 10)
    eager = loss(logits, results[0][1])
    loss.compile()
    torch.testing.assert_close(loss(logits, results[0][1]), eager)
