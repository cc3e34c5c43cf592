"""The speed switches in a run: ``auto`` in the parser, the config's four values, compile.

The device facts and the choices ``auto`` makes live in ``cifar_moe.core.hardware``.

``data.device_augment``, ``model.channels_last``, ``model.compile`` and ``trainer.precision``
accept ``auto``: on a CUDA device the fast choice (device data path, channels_last,
torch.compile, ``bf16-mixed`` where the GPU has bf16), anywhere else the plain one (all off,
``32-true``). Explicit values always win. The choices are pure functions of a
:class:`DeviceFacts`, so tests pass facts instead of needing a GPU.
"""

import sys

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from cifar_moe.core.errors import UserError
from cifar_moe.core.hardware import AUTO, Auto, DeviceFacts, settle
from cifar_moe.core.private_api import (
    eager_backward_lowering,
    is_compiled,
    uncompile,
    widen_argument_type,
)


def config_values(config) -> dict:
    """The four settings as configured (``auto`` or explicit), from a subcommand's config."""
    return {
        "device_augment": config.data.device_augment,
        "channels_last": config.model.channels_last,
        "compile": config.model.compile,
        "precision": config.trainer.precision,
    }


def accept_auto_precision(parser) -> None:
    """Let ``trainer.precision`` take ``auto`` (the CLI settles it before the Trainer exists)
    and make ``auto`` its default.

    Lightning types precision as a closed Literal; jsonargparse offers no public way to widen
    an added argument's type, so the action's type hint is widened in place (checked by the
    tests, which parse ``auto`` and reject ``bogus``).
    """
    widen_argument_type(parser, "trainer.precision", Auto)
    parser.set_defaults({"trainer.precision": AUTO})


@rank_zero_only
def say(line: str) -> None:
    """One line on stderr, from the rank-zero process only."""
    print(line, file=sys.stderr, flush=True)


def apply_speed_settings(module, facts: DeviceFacts) -> None:
    """A LitClassifier's ``configure_model``: settle channels_last, compile and CUDA graphs
    on ``facts`` and apply them to ``module.net`` in place (state_dict keys unchanged)."""
    settings = module.speed_settings
    module.channels_last = settle(settings["channels_last"], "channels_last", facts)
    if module.channels_last:
        module.net.to(memory_format=torch.channels_last)
    compiled = settle(settings["compile"], "compile", facts)
    graphs = bool(settings.get("cuda_graphs"))
    if graphs and not compiled:
        raise UserError(f"model.cuda_graphs needs model.compile (it is "
                        f"{settings['compile']!r} on {facts.kind}); set model.compile true")
    if graphs and facts.kind != "cuda":
        say(f"note: model.cuda_graphs applies to a CUDA device only; off on {facts.kind}")
        graphs = False
    module.cuda_graphs = graphs
    if compiled:
        _REPORTED.clear()  # a failure is said once per fit
        compile_in_place(module.net, cuda_graphs=graphs)
        # The step's own tensor work is fused too: a focal loss and the mix are ~40 small
        # ops each eagerly, a launch apiece on a GPU; smoothed cross-entropy about ten.
        if is_compiled(module.net):  # else compile cannot start here: all of it stays eager
            compile_in_place(module.loss_fn)
            module.mixer.compile()


def compile_in_place(net: nn.Module, cuda_graphs: bool = False) -> None:
    """``net.compile()`` once (with ``cuda_graphs``: mode ``reduce-overhead`` and static
    shapes, so each shape is one recorded graph); if torch.compile cannot even start here,
    say so and stay eager."""
    if is_compiled(net):
        return
    try:
        net.compile(**({"mode": "reduce-overhead", "dynamic": False} if cuda_graphs else {}))
    except Exception as err:  # any failure means the same: run eager
        _report_compile_failure(net, err)


def call_compiled_or_eager(net: nn.Module, *inputs):
    """``net(*inputs)``; if torch.compile fails on this machine (compilation happens at the
    first call of each new graph), say so in one line and continue eager.

    A failed compile runs nothing, so no state (e.g. BatchNorm statistics) is touched twice;
    an error of the network itself fails again eagerly and propagates as it would have.
    """
    if not is_compiled(net):
        return net(*inputs)
    try:
        with eager_backward_lowering():
            return net(*inputs)
    except Exception as err:
        _report_compile_failure(net, err)
        return net(*inputs)


_REPORTED: set[str] = set()  # failures said in this fit: the net, loss and mix fail alike


def _report_compile_failure(net: nn.Module, err: Exception) -> None:
    uncompile(net)
    gist = " ".join(f"{type(err).__name__}: {err}".split())[:200]
    if gist not in _REPORTED:
        _REPORTED.add(gist)
        say(f"warning: model.compile: torch.compile failed on this machine ({gist}); "
            "continuing eager")
