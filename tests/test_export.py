"""`python -m cifar_moe.export`: the exported uint8 -> probabilities model agrees with the ckpt."""

import json
from pathlib import Path

import onnx  # the export extra, part of [dev]
import onnxruntime as ort
import pytest
import torch
from tiny_run import tiny_fit

from cifar_moe.data.cifar_files import read_split
from cifar_moe.deploy.export import main as export_main
from cifar_moe.training.module import LitClassifier


@pytest.fixture(scope="module")
def ckpt(synthetic_data_dir, tmp_path_factory):
    """A checkpoint of a routed residual net (K=2) after a few steps, so BN stats moved."""
    root = tmp_path_factory.mktemp("export_run")
    _, _, best = tiny_fit(root, synthetic_data_dir, "--model.net.init_args.block=residual")
    return best


def _run_onnx(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["probs"], {"images": images.numpy()})[0])


def _run_pt2(path, images):
    return torch.export.load(str(path)).module()(images)


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize(("fmt", "runner"), [("onnx", _run_onnx), ("torch-export", _run_pt2)])
def test_exported_model_agrees_with_the_checkpoint(ckpt, real_data_dir, tmp_path, fmt, runner):
    images, _ = read_split(real_data_dir / "cifar-10-batches-py", train=False)  # uint8
    out = export_main(["--ckpt_path", str(ckpt), "--format", fmt,
                       "--out", str(tmp_path / f"model.{fmt}")])
    model = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    expected = model.classify(images).probs  # (500, 10), fp32
    got = runner(out, images)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert (got - expected).abs().max().item() <= 1e-4
    # Any batch size, not only the one traced.
    assert (runner(out, images[:3]) - expected[:3]).abs().max().item() <= 1e-4


@pytest.mark.slow
@pytest.mark.real_data
def test_flip_tta_goes_into_the_exported_graph(ckpt, real_data_dir, tmp_path):
    images, _ = read_split(real_data_dir / "cifar-10-batches-py", train=False)
    images = images[:64]
    out = export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--tta", "flip",
                       "--out", str(tmp_path / "flip.onnx")])
    model = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    model.tta = "flip"
    assert (_run_onnx(out, images) - model.classify(images).probs).abs().max().item() <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == model.class_names


@pytest.mark.slow
def test_default_output_lies_beside_the_checkpoint(ckpt, capsys):
    out = export_main(["--ckpt_path", str(ckpt), "--format", "torch-export"])
    assert out == ckpt.with_suffix(".pt2") and out.is_file()
    assert not list(ckpt.parent.glob("*.partial"))
    assert f"exported: {out}" in capsys.readouterr().out
    extra = {"class_names.json": ""}
    torch.export.load(str(out), extra_files=extra)
    assert json.loads(extra["class_names.json"])[0] == "airplane"


NOT_A_CKPT = Path(__file__).resolve().parents[1] / "README.md"  # a file, but text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ckpt_path", "missing.ckpt"], "error: ckpt_path missing.ckpt is not a file"),
        (["--ckpt_path", "x.ckpt", "--format", "tflite"], "error: argument --format"),
        ([], "error: the following arguments are required: --ckpt_path"),
        (["--ckpt_path", str(NOT_A_CKPT)], f"error: ckpt_path {NOT_A_CKPT} cannot be read"),
    ],
)
def test_bad_settings_are_one_error_line(args, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        export_main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(fragment)
