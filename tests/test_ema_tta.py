"""EMA of weights (configs/extras/ema.yaml, Lightning's EMAWeightAveraging) and flip TTA."""

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging
from tiny_run import CONFIGS, tiny_args, tiny_fit

from cifar_moe.cli.main import cli_main
from cifar_moe.data.augment import build_eval_transform
from cifar_moe.data.cifar_files import read_split
from cifar_moe.models import MoENet
from cifar_moe.training.module import LitClassifier

EMA = ["--config", str(CONFIGS / "extras" / "ema.yaml")]


def _callbacks(cli, kind):
    return [c for c in cli.trainer.callbacks if isinstance(c, kind)]


def test_ema_overlay_adds_to_the_recipe_callbacks(synthetic_data_dir):
    cli = cli_main(["--config", str(CONFIGS / "focal_onecycle.yaml"), *EMA,
                    f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40"], run=False)
    (ema,) = _callbacks(cli, EMAWeightAveraging)
    assert _callbacks(cli, EarlyStopping), "the recipe's EarlyStopping must survive the overlay"
    assert ema.update_every_n_steps == 1
    decay = ema._kwargs["avg_fn"]  # get_ema_avg_fn(decay): ema * decay + (1 - decay) * w
    assert decay(torch.tensor(1.0), torch.tensor(0.0), 1).item() == pytest.approx(0.995)


@pytest.mark.slow
def test_ema_validates_and_checkpoints_the_averaged_weights(synthetic_data_dir, tmp_path):
    cli, run, _ = tiny_fit(tmp_path, synthetic_data_dir, *EMA,
                           "--trainer.callbacks.init_args.decay=0.5", epochs=2)
    fit_val_loss = cli.trainer.callback_metrics["val/loss"].item()
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    # Lightning keeps the raw weights for resuming and saves the average as the model.
    averaged, raw = last["state_dict"], last["current_model_state"]
    assert last["averaging_state"]["n_averaged"].item() == last["global_step"] == 6
    floats = [k for k, v in averaged.items() if v.is_floating_point() and "_tau" not in k]
    assert all((averaged[k] - raw[k]).abs().max() > 0 for k in floats if "weight" in k)
    # The fit ends holding the average, and that average is what its validation scored:
    # re-validating the checkpoint reproduces the last val/loss of the fit.
    for key, value in cli.model.state_dict().items():
        torch.testing.assert_close(value, averaged[key])
    check = cli_main(["validate", *tiny_args(tmp_path / "check", synthetic_data_dir),
                      f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    assert check.trainer.callback_metrics["val/loss"].item() == pytest.approx(fit_val_loss,
                                                                              rel=1e-5)
    # ... which the raw weights would not have.
    model = LitClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    model.load_state_dict(raw)
    raw_check = cli_main(tiny_args(tmp_path / "raw", synthetic_data_dir), run=False)
    loss = raw_check.trainer.validate(model, datamodule=raw_check.datamodule)[0]["val/loss"]
    assert loss != pytest.approx(fit_val_loss, rel=1e-3)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return LitClassifier(MoENet(stem_width=8, widths=[8, 16], pool_after=[0, 1]))


def _count_net_calls(model):
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_flip_tta_runs_at_evaluation_only(tiny_model):
    tiny_model.tta = "flip"
    calls = _count_net_calls(tiny_model)
    batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    tiny_model.training_step(batch, 0)
    assert len(calls) == 1
    tiny_model.eval()
    for step in (tiny_model.validation_step, tiny_model.test_step, tiny_model.predict_step):
        calls.clear()
        step(batch, 0)
        assert len(calls) == 2, step.__name__


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_flip_tta_is_the_mean_of_the_logits(tiny_model):
    tiny_model.eval()
    images = torch.randn(5, 3, 32, 32)
    batch = (images, torch.arange(5))
    plain = tiny_model.predict_step(batch, 0)
    tiny_model.tta = "flip"
    with torch.no_grad():
        expected = ((tiny_model(images) + tiny_model(images.flip(-1))) / 2).softmax(dim=-1)
        got = tiny_model.predict_step(batch, 0)
        logits_preds = tiny_model.validation_step(batch, 0)["preds"]
    torch.testing.assert_close(got, expected)
    assert (got - plain).abs().max() > 1e-4
    assert logits_preds.tolist() == expected.argmax(dim=-1).tolist()


@pytest.mark.slow
def test_tta_from_the_command_line_beats_the_checkpoint_hparams(synthetic_data_dir, tmp_path,
                                                                tiny_fit_args):
    _, _, ckpt = tiny_fit(tmp_path, synthetic_data_dir)  # trained with tta: none
    base = ["test", *tiny_fit_args(), f"--ckpt_path={ckpt}"]
    images, labels = read_split(synthetic_data_dir / "cifar-10-batches-py", train=False)
    model = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    x = build_eval_transform()(images)
    with torch.no_grad():
        plain_logits, mirror_logits = model(x), model(x.flip(-1))
    for tta, logits in (("none", plain_logits), ("flip", (plain_logits + mirror_logits) / 2)):
        cli = cli_main([*base, f"--model.tta={tta}"])
        assert cli.model.tta == tta
        expected = model.loss_fn(logits, labels).item()  # the whole test set in one batch
        got = cli.trainer.callback_metrics["test/loss"].item()
        assert got == pytest.approx(expected, rel=1e-5), tta
