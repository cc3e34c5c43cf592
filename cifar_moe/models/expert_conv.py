"""K parallel 3x3 expert convolutions, weighted per sample by given routing weights.

Like timm's ``CondConv2d.forward(x, routing_weights)``, the routing comes in as an
argument; the router is a separate module. Two implementations share one parameter, and
a third setting picks between them by input size:

* ``mixture`` (mixture of outputs): all K experts as one conv with K * C_out output
  channels, then the per-sample weighted sum over K. Costs K convolutions.
* ``aggregate`` (kernel aggregation, dynamic convolution): per sample
  W_b = sum_k a_bk W_k, then one grouped conv with groups = B. Costs one convolution
  plus a matmul that materialises B kernels. Both compute the same function, as the tests
  check in float64 (outputs and gradients).
* ``auto`` (the default): per call, ``aggregate`` for an input on the CPU with at least
  ``AUTO_MIN_PIXELS`` pixels per channel, else ``mixture``.

Why ``auto``: neither implementation wins everywhere. Mixture costs K convolutions but
shares one weight over B*H*W positions; aggregate costs one convolution but reuses each
per-sample kernel over only H*W positions and writes and reads B kernels, which is memory
bound once H*W is small and the channels are wide. Measured on this project's CPU (one
thread, batch 64, forward + backward of one layer, ms; useful GFLOP/s in brackets):

    layer (seed preset)        mixture        aggregate
    48->96 32x32 K2 (A)      403 (40)       177 (92)
    96->192 16x16 K2 (A)     223 (73)       213 (77)
    192->384 8x8 K2 (A)      213 (76)       570 (29)
    384->384 4x4 K2 (A)      111 (74)      1000 (8)
    16->64 32x32 K4 (B)      279 (13)        40 (91)
    32->128 16x16 K4 (B)     145 (25)        39 (94)
    128->512 8x8 K4 (B)      413 (35)       543 (27)
    256->1024 4x4 K4 (B)     539 (27)      1881 (8)

The crossover lies between 8x8 and 16x16 for both K = 2 and K = 4, hence 256 pixels.
Whole presets, training img/s at one CPU thread (benchmarks/bench_models.py --quick
--threads 1): seed_a mixture 46, aggregate 24, auto 53; seed_b 27, 16, 31.
On a GPU the grouped conv is the slow path everywhere (H100, bf16 autocast, channels_last,
batch 512, training img/s: seed_a mixture 27,400 vs aggregate 2,300; seed_b 19,600 vs
2,600), so ``auto`` is ``mixture`` off the CPU.
For the aggregate step a grouped conv (groups = B) beat unfold + batched matmul wherever
aggregate is the right choice (48->96 32x32: 161 vs 316 ms; 32->128 16x16: 40 vs 56 ms);
unfold + bmm only won at 8x8 (128->512: 341 vs 525 ms), where mixture is used anyway.

Two parametrisations of the same K kernels: by default the K experts are independent
parameters; with ``shared`` expert k is ``shared_weight + weight[k]``, so every sample's
gradient reaches the shared kernel in full (as in a K = 1 conv) and weight decay pulls the
experts toward each other. ``init_spread`` sets how alike the experts start.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.core.errors import UserError

ExpertImpl = Literal["mixture", "aggregate", "auto"]
IMPLS = ("mixture", "aggregate", "auto")
AUTO_MIN_PIXELS = 256
"""``auto`` aggregates kernels from this many pixels per channel (16x16) up; see above."""


class ExpertConv2d(nn.Module):
    """K experts C_in -> C_out (3x3, padding 1, no bias) mixed per sample.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        num_experts: K.
        impl: ``mixture``, ``aggregate`` or ``auto``; settable after construction.
        kernel_size: odd kernel size; padding keeps H and W.
        init_spread: the share of each expert's init std that is its own draw, in (0, 1]:
            1 draws the K experts independently; near 0 starts them as near-copies of one
            shared kernel, so the block starts as the K = 1 conv (sparse upcycling).
        shared: parametrise expert k as ``shared_weight + weight[k]``: one kernel that every
            sample's gradient reaches in full, as in a K = 1 conv, plus per-expert deltas
            that weight decay pulls toward each other. Same function class; K > 1 only.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_experts: int,
        impl: ExpertImpl = "auto",
        kernel_size: int = 3,
        init_spread: float = 1.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        if not 0 < init_spread <= 1:
            raise UserError(f"init_spread is {init_spread}; use a value in (0, 1]")
        self.init_spread = init_spread
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_experts, self.kernel_size = num_experts, kernel_size
        self.padding = kernel_size // 2
        self.impl = impl
        # 4-D, experts stacked on the output dim: channels_last applies, one state_dict.
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(num_experts * shape[0], *shape[1:]))
        self.shared_weight = nn.Parameter(torch.empty(shape)) if shared and num_experts > 1 \
            else None
        self.reset_parameters()

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLS:
            raise UserError(f"impl is {value!r}; use one of {', '.join(IMPLS)}")
        self._impl = value

    def reset_parameters(self) -> None:
        # He init per expert (fan of one expert, not of all K). Each expert is
        # sqrt(1 - s^2) * shared + s * own; the own part (s > 0) breaks the symmetry that
        # identical experts would keep forever.
        experts = self.weight.data.chunk(self.num_experts, dim=0)  # K x (C_out, C_in, k, k)
        for expert in experts:
            nn.init.kaiming_normal_(expert, mode="fan_out", nonlinearity="relu")
        s, k = self.init_spread, self.num_experts
        # Drawn after the experts and only for K > 1, so s = 1 and K = 1 keep the random
        # stream (and a seeded run) unchanged.
        if s < 1 and k > 1:
            shared = nn.init.kaiming_normal_(torch.empty_like(experts[0]), mode="fan_out",
                                             nonlinearity="relu")
            # BatchNorm follows, so the kernel's scale sets only its effective learning
            # rate; the uniform mixture keeps the variance independent experts give it
            # (He / K), or near-copies would start with 1/K of K = 1's effective rate.
            gain = ((1 / k) / (1 - s * s + s * s / k)) ** 0.5
            shared.mul_(gain * (1 - s * s) ** 0.5)
            for expert in experts:
                expert.mul_(s * gain)
                if self.shared_weight is None:
                    expert.add_(shared)
            if self.shared_weight is not None:
                self.shared_weight.data.copy_(shared)
        elif self.shared_weight is not None:  # s = 1: independent experts, nothing shared
            self.shared_weight.data.zero_()

    def expert_weights(self) -> Tensor:
        """The K kernels stacked on the output dim, ``(K*C_out, C_in, k, k)``."""
        if self.shared_weight is None:
            return self.weight
        shared = self.shared_weight.repeat(self.num_experts, 1, 1, 1)  # (K*C_out, C_in, k, k)
        return self.weight + shared

    @torch.no_grad()
    def spread(self) -> Tensor:
        """How far apart the experts are: RMS over k of ||W_k - mean W|| / ||mean W||.

        0 means identical experts, so routing changes nothing however its weights vary;
        two independently drawn experts give about 1.
        """
        w = self.expert_weights().float().reshape(self.num_experts, -1)  # (K, C_out*C_in*k*k)
        mean = w.mean(dim=0)
        return (w - mean).norm(dim=1).pow(2).mean().sqrt() / mean.norm().clamp_min(1e-12)

    def forward(self, x: Tensor, routing_weights: Tensor) -> Tensor:
        if self.num_experts == 1:
            return F.conv2d(x, self.weight, padding=self.padding)
        weight = self.expert_weights()
        impl = self._impl
        if impl == "auto":
            wide = x.shape[-2] * x.shape[-1] >= AUTO_MIN_PIXELS
            impl = "aggregate" if wide and x.device.type == "cpu" else "mixture"
        if impl == "mixture":
            return self._mixture(x, routing_weights, weight)
        return self._aggregate(x, routing_weights, weight)

    def _mixture(self, x: Tensor, routing_weights: Tensor, weight: Tensor) -> Tensor:
        out = F.conv2d(x, weight, padding=self.padding)  # (B, K*C_out, H, W)
        b, _, h, w = out.shape
        out = out.view(b, self.num_experts, self.out_channels, h, w)  # (B, K, C_out, H, W)
        a = routing_weights.view(b, self.num_experts, 1, 1, 1)  # (B, K, 1, 1, 1)
        if a.dtype != out.dtype:  # a cast only where needed: each is a recorded operator
            a = a.to(out.dtype)
        # Multiply and sum, not one (B, 1, K) @ (B, K, C_out*H*W) matmul: the matmul records as
        # many operators (fewer kernels: 3 against 5) but rounds differently, which changed a
        # seeded run's loss by 3 % after 12 steps; kept until that is worth a changed run.
        return (out * a).sum(dim=1)  # (B, C_out, H, W)

    def _aggregate(self, x: Tensor, routing_weights: Tensor, weight: Tensor) -> Tensor:
        b, c_in, h, w = x.shape
        k = self.kernel_size
        experts = weight.reshape(self.num_experts, -1)  # (K, C_out*C_in*k*k)
        kernels = routing_weights.to(experts.dtype) @ experts  # (B, C_out*C_in*k*k)
        kernels = kernels.view(b * self.out_channels, c_in, k, k)  # (B*C_out, C_in, k, k)
        stacked = x.reshape(1, b * c_in, h, w)  # (1, B*C_in, H, W): samples become groups
        out = F.conv2d(stacked, kernels, padding=self.padding, groups=b)  # (1, B*C_out, H, W)
        return out.view(b, self.out_channels, h, w)  # (B, C_out, H, W)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_experts={self.num_experts}, "
            f"kernel_size={self.kernel_size}, impl={self._impl}"
            + (", shared" if self.shared_weight is not None else "")
        )
