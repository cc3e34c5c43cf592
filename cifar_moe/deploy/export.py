"""Export a checkpoint as a deployable model: uint8 images in, class probabilities out.

    python -m cifar_moe.export --ckpt_path <ckpt> --format onnx|torch-export [--out path]
        [--overwrite]

The graph holds normalisation and (``--tta flip``) test-time augmentation, so a runtime
feeds raw uint8 (B, 3, 32, 32) RGB images, any batch size, and reads (B, C) probabilities.
Class names travel with the file (ONNX metadata ``class_names``; ``class_names.json`` in the
``.pt2`` archive). ONNX needs the ``export`` extra: ``pip install -e ".[export]"``.
"""

import argparse
import copy
import io
import json
import sys
from contextlib import suppress
from pathlib import Path

import torch
from torch import nn

from cifar_moe.core.errors import UserError
from cifar_moe.deploy.inference import UInt8Classifier
from cifar_moe.models.expert_conv import ExpertConv2d
from cifar_moe.training.tta import TTA_MODES

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}
"""Export format -> file suffix of the default output path (beside the checkpoint)."""


def deployable(model, tta: str | None = None) -> UInt8Classifier:
    """An eval-mode copy of ``model.net`` (a ``LitClassifier``) behind uint8 normalisation.

    Expert convs are set to ``mixture``: ``aggregate`` runs a grouped conv with one group per
    sample, which no exporter keeps batch-size independent; both compute the same function.
    """
    net = copy.deepcopy(model.net).cpu().float().eval()
    for module in net.modules():
        if isinstance(module, ExpertConv2d):
            module.impl = "mixture"
    return UInt8Classifier(net, model.tta if tta is None else tta).eval()


def export_classifier(model, fmt: str, out: str | Path, tta: str | None = None) -> Path:
    """Write ``model`` (a ``LitClassifier``) to ``out`` as ``onnx`` or ``torch-export``."""
    wrapper = deployable(model, tta)
    example = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)  # batch 2: 1 would be specialised
    dynamic = {"images": {0: torch.export.Dim("batch")}}
    names = json.dumps(list(model.class_names))
    buffer = io.BytesIO()
    if fmt == "onnx":
        buffer.write(_onnx_bytes(wrapper, example, dynamic, names))
    else:
        program = torch.export.export(wrapper, (example,), dynamic_shapes=dynamic)
        torch.export.save(program, buffer, extra_files={"class_names.json": names})
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(buffer.getvalue())
        partial.replace(out)  # never a half-written model file
    except OSError as err:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        raise UserError(f"could not write {out} ({err.strerror}); pass --out <a path in a "
                        "writable folder with space>") from None
    return out


def _onnx_bytes(wrapper: nn.Module, example, dynamic: dict, class_names: str) -> bytes:
    try:
        import onnx  # noqa: F401  (the dynamo exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise UserError(f"format onnx needs the '{err.name}' package; install the export "
                        "extra: pip install -e '.[export]'") from None
    program = torch.onnx.export(wrapper, (example,), dynamo=True, verbose=False,
                                input_names=["images"], output_names=["probs"],
                                dynamic_shapes=dynamic)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "class_names", class_names
    return proto.SerializeToString()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (--help lists the settings)")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m cifar_moe.export", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by fit")
    parser.add_argument("--format", choices=list(FORMATS), default="onnx",
                        help="onnx (onnxruntime and others) or torch-export (.pt2)")
    parser.add_argument("--out", help="output file; default: beside the checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (otherwise refused)")
    parser.add_argument("--tta", choices=TTA_MODES,
                        help="test-time augmentation inside the model; default: the checkpoint's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Export from the command line; a bad setting is one ``error:`` line and exit code 2."""
    from cifar_moe.training.faults import read_checkpoint  # Lightning only when needed
    from cifar_moe.training.module import LitClassifier

    try:
        args = _parse(argv)
        ckpt = Path(args.ckpt_path)
        if not ckpt.is_file():
            raise UserError(f"ckpt_path {ckpt} is not a file; pass a .ckpt that fit wrote")
        read_checkpoint(str(ckpt))  # one line for a file that is no (whole) checkpoint
        try:
            model = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu")
        except TypeError as err:  # e.g. no `net` saved: a module built by hand
            raise UserError(f"ckpt_path {ckpt} cannot rebuild its network ({err}); export "
                            "it in Python: cifar_moe.export.export_classifier(model, ...)"
                            ) from None
        out = Path(args.out) if args.out else ckpt.with_suffix(FORMATS[args.format])
        if out.exists() and not args.overwrite:
            raise UserError(f"{out} exists; pass --overwrite to replace it, or --out another "
                            "path")
        path = export_classifier(model, args.format, out, args.tta)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"exported: {path} ({args.format}; uint8 (B, 3, 32, 32) -> probabilities (B, "
          f"{len(model.class_names)}); tta {args.tta or model.tta})")
    return path


if __name__ == "__main__":
    main()
