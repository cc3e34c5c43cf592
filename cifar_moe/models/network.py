"""The routed-expert network: stem -> expert blocks (with max-pools) -> classifier."""

from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from cifar_moe.core.errors import UserError
from cifar_moe.models.blocks import PlainExpertBlock, ResidualExpertBlock
from cifar_moe.models.classifier import Classifier
from cifar_moe.models.expert_conv import IMPLS, ExpertConv2d, ExpertImpl
from cifar_moe.models.penalties import Penalty
from cifar_moe.models.router import Gate, Router, RouterSettings, find_routers
from cifar_moe.models.stem import Stem, WhiteningStem

STEMS = {"conv": Stem, "whiten": WhiteningStem}
BLOCKS = {"plain": PlainExpertBlock, "residual": ResidualExpertBlock}


class MoENet(nn.Module):
    """A CIFAR network of per-sample routed K-expert conv blocks. Presets: ``models/presets/``.

    The defaults are a small 3-stage net for quick trials; the seed networks' numbers live
    only in their YAML presets.

    Args:
        stem_width: output channels of the stem (24 for the whitening stem).
        stem: ``conv`` (3x3 conv, BN, ReLU) or ``whiten`` (airbench's frozen 2x2 patch
            whitening, set from the training images at the start of a fit).
        widths: output channels of each expert block, in order.
        pool_after: indices of blocks followed by a 2x2 max-pool.
        num_experts: K, experts per block; 1 gives a static conv net (the control).
        routed_blocks: indices of the blocks that get K routed experts; the others are static
            K = 1 convs, as MoE transformers route only some layers. None routes every block.
        reduction: router MLP bottleneck ratio r (hidden = C // r).
        router_norm: routers standardise their pooled input over the batch (keeps routing
            input-dependent; False is the pre-fix default, kept for the ablation).
        router_zero_init: routers start exactly uniform (False: He init, the pre-fix default).
        router_logit_norm: routers standardise their logits over the batch (no
            input-independent preference, bounded scale; False is the pre-fix default).
        router_tau: routers' softmax temperature (above 1 softer, below 1 sharper routing).
        router_aux: routing regulariser, a ``balance_penalty`` kind: ``cv2``, ``entropy``
            (balance), ``mutual_info`` (balance and confident per-image choices).
        router_aux_weight: its weight in the training loss (via ``aux_loss``); 0 is off.
        router_gate: ``soft`` (softmax weights) or ``top1`` (straight-through hard top-1:
            the one-hot of the argmax forward, the softmax's gradient backward).
        block: ``plain`` (experts -> BN -> dropout -> ReLU) or ``residual`` (bottleneck + skip).
        block_dropout: dropout probability inside every block.
        classifier_dropout: dropout probability before the final linear layer.
        bottleneck_ratio: residual blocks only: bottleneck width = block width // ratio.
        impl: expert-conv implementation, ``mixture``, ``aggregate`` or ``auto`` (fastest).
        expert_init_spread: share of each expert's init std that is its own draw, in (0, 1];
            1 draws experts independently, near 0 starts them as near-copies of one kernel.
        expert_shared: each expert is one shared kernel plus its own delta (the shared part
            gets every sample's full gradient, as in K = 1; weight decay pulls experts together).
        num_classes: number of output logits (linked from the data module by the CLI).
    """

    def __init__(
        self,
        stem_width: int = 48,
        stem: Literal["conv", "whiten"] = "conv",
        widths: list[int] = [64, 128, 256],  # noqa: B006 (jsonargparse shows it)
        pool_after: list[int] = [0, 1, 2],  # noqa: B006
        num_experts: int = 2,
        routed_blocks: list[int] | None = None,
        reduction: int = 4,
        router_norm: bool = True,
        router_zero_init: bool = True,
        router_logit_norm: bool = True,
        router_tau: float = 1.0,
        router_aux: Penalty = "entropy",
        router_aux_weight: float = 0.0,
        router_gate: Gate = "soft",
        block: Literal["plain", "residual"] = "plain",
        block_dropout: float = 0.0,
        classifier_dropout: float = 0.0,
        bottleneck_ratio: int = 4,
        impl: ExpertImpl = "auto",
        expert_init_spread: float = 1.0,
        expert_shared: bool = False,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        _check(widths, pool_after, num_experts, block, block_dropout, classifier_dropout,
               bottleneck_ratio, impl, num_classes, stem_width, expert_init_spread,
               routed_blocks, stem)
        self.num_experts = num_experts
        self.stem = STEMS[stem](stem_width)
        router = RouterSettings(reduction=reduction, tau=router_tau, input_norm=router_norm,
                                zero_init=router_zero_init, logit_norm=router_logit_norm,
                                aux_kind=router_aux, aux_weight=router_aux_weight,
                                gate=router_gate)
        make = _block_maker(block, block_dropout, impl, expert_init_spread,
                            expert_shared, bottleneck_ratio, router)
        routed = range(len(widths)) if routed_blocks is None else routed_blocks
        experts = [num_experts if i in routed else 1 for i in range(len(widths))]
        self.blocks = _stack(make, stem_width, widths, pool_after, experts)
        self.classifier = Classifier(widths[-1], num_classes, classifier_dropout)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.blocks(self.stem(x)))

    def aux_loss(self) -> Tensor | None:
        """The routers' regulariser of the last training forward (mean over blocks), or None.

        A training loop adds it to the task loss; any network may offer this method.
        """
        routers = find_routers(self)
        losses = [r.aux_loss for r in routers if r.aux_loss is not None]
        for r in routers:
            r.aux_loss = None  # read once: no graph outlives its step
        return torch.stack(losses).mean() if losses else None


def _block_maker(block: str, dropout: float, impl: str, init_spread: float,
                 shared: bool, bottleneck_ratio: int, router: RouterSettings) -> partial:
    """The block class of ``block`` with every setting bound but its widths and K."""
    extra = {"bottleneck_ratio": bottleneck_ratio} if block == "residual" else {}
    return partial(BLOCKS[block], dropout=dropout, impl=impl,
                   init_spread=init_spread, shared=shared, router=router, **extra)


def _stack(make, in_channels: int, widths: list[int], pool_after: list[int],
           experts: list[int]) -> nn.Sequential:
    """Blocks of the given widths and expert counts, each chained to the last, with 2x2
    max-pools after some."""
    layers: list[nn.Module] = []
    for index, width in enumerate(widths):
        layers.append(make(in_channels, width, num_experts=experts[index]))
        if index in pool_after:
            layers.append(nn.MaxPool2d(2))
        in_channels = width
    return nn.Sequential(*layers)


def init_weights(net: nn.Module) -> None:
    """He init on convs and linears, zero biases, BN at identity; experts and routers keep
    their own init (``reset_parameters``)."""
    owned = {id(m) for r in net.modules() if isinstance(r, Router) for m in r.modules()}
    for module in net.modules():
        if isinstance(module, (ExpertConv2d, Router)):
            module.reset_parameters()
        if id(module) in owned or isinstance(module, ExpertConv2d):
            continue
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            # fan_in keeps logits O(1): fan_out on a 10-way head gives logits of std ~5 and a
            # first-step loss near 10, which lr 0.19 (seed A) does not survive on small data.
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _check(widths, pool_after, k, block, block_dropout, classifier_dropout,
           bottleneck_ratio, impl, num_classes, stem_width, expert_init_spread,
           routed_blocks, stem) -> None:
    """One line per bad setting, naming it, before anything is built."""
    rules = [
        (k >= 1, "num_experts", k, "use 1 (static control) or more"),
        (len(widths) > 0, "widths", widths, "give at least one block width"),
        (all(w >= 1 for w in widths) and stem_width >= 1, "widths/stem_width", widths,
         "use positive channel counts"),
        (all(0 <= i < len(widths) for i in pool_after), "pool_after", pool_after,
         f"use block indices 0..{len(widths) - 1}"),
        (len(set(pool_after)) <= 5, "pool_after", pool_after,
         "use at most 5 blocks: each 2x2 max-pool halves the 32x32 image"),
        (block in BLOCKS, "block", block, f"use one of {', '.join(BLOCKS)}"),
        (stem in STEMS, "stem", stem, f"use one of {', '.join(STEMS)}"),
        (stem != "whiten" or stem_width == 24, "stem_width", stem_width,
         "use 24 with stem: whiten (2 signs x 3 colours x 2 x 2 pixels)"),
        (impl in IMPLS, "impl", impl, f"use one of {', '.join(IMPLS)}"),
        (0 <= block_dropout < 1, "block_dropout", block_dropout, "use a value in [0, 1)"),
        (0 <= classifier_dropout < 1, "classifier_dropout", classifier_dropout,
         "use a value in [0, 1)"),
        (bottleneck_ratio >= 1, "bottleneck_ratio", bottleneck_ratio, "use 1 or more"),
        (num_classes >= 1, "num_classes", num_classes, "use 1 or more"),
        (0 < expert_init_spread <= 1, "expert_init_spread", expert_init_spread,
         "use a value in (0, 1]"),
        (routed_blocks is None or (routed_blocks and all(0 <= i < len(widths)
                                                         for i in routed_blocks)),
         "routed_blocks", routed_blocks,
         f"use block indices 0..{len(widths) - 1}, or null to route every block"),
    ]
    for ok, name, value, fix in rules:
        if not ok:
            raise UserError(f"model.net.init_args.{name} is {value!r}; {fix}")
