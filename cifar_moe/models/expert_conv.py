"""K parallel 3x3 expert convolutions, weighted per sample by given routing weights.

Like timm's ``CondConv2d.forward(x, routing_weights)``, the routing comes in as an
argument; the router is a separate module. Two implementations share one parameter:

* ``mixture`` (mixture of outputs): all K experts as one conv with K * C_out output
  channels, then the per-sample weighted sum over K. Costs K convolutions.
* ``aggregate`` (kernel aggregation, dynamic convolution): per sample
  W_b = sum_k a_bk W_k, then one grouped conv with groups = B. Costs one convolution
  plus a small matmul. Both compute the same function, as the tests check in float64.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.errors import UserError

ExpertImpl = Literal["mixture", "aggregate"]
IMPLS = ("mixture", "aggregate")


class ExpertConv2d(nn.Module):
    """K experts C_in -> C_out (3x3, padding 1, no bias) mixed per sample.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        num_experts: K.
        impl: ``mixture`` or ``aggregate``; settable after construction.
        kernel_size: odd kernel size; padding keeps H and W.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_experts: int,
        impl: ExpertImpl = "mixture",
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_experts, self.kernel_size = num_experts, kernel_size
        self.padding = kernel_size // 2
        self.impl = impl
        # 4-D, experts stacked on the output dim: channels_last applies, one state_dict.
        self.weight = nn.Parameter(
            torch.empty(num_experts * out_channels, in_channels, kernel_size, kernel_size)
        )
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
        # He init per expert (fan of one expert, not of all K); independent draws break the
        # symmetry that identical experts would keep forever.
        for expert in self.weight.data.chunk(self.num_experts, dim=0):
            nn.init.kaiming_normal_(expert, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, routing_weights: Tensor) -> Tensor:
        if self.num_experts == 1:
            return F.conv2d(x, self.weight, padding=self.padding)
        if self._impl == "mixture":
            return self._mixture(x, routing_weights)
        return self._aggregate(x, routing_weights)

    def _mixture(self, x: Tensor, routing_weights: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight, padding=self.padding)  # (B, K*C_out, H, W)
        b, _, h, w = out.shape
        out = out.view(b, self.num_experts, self.out_channels, h, w)  # (B, K, C_out, H, W)
        a = routing_weights.view(b, self.num_experts, 1, 1, 1).to(out.dtype)  # (B, K, 1, 1, 1)
        return (out * a).sum(dim=1)  # (B, C_out, H, W)

    def _aggregate(self, x: Tensor, routing_weights: Tensor) -> Tensor:
        b, c_in, h, w = x.shape
        k = self.kernel_size
        experts = self.weight.reshape(self.num_experts, -1)  # (K, C_out*C_in*k*k)
        kernels = routing_weights.to(experts.dtype) @ experts  # (B, C_out*C_in*k*k)
        kernels = kernels.view(b * self.out_channels, c_in, k, k)  # (B*C_out, C_in, k, k)
        stacked = x.reshape(1, b * c_in, h, w)  # (1, B*C_in, H, W): samples become groups
        out = F.conv2d(stacked, kernels, padding=self.padding, groups=b)  # (1, B*C_out, H, W)
        return out.view(b, self.out_channels, h, w)  # (B, C_out, H, W)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_experts={self.num_experts}, "
            f"kernel_size={self.kernel_size}, impl={self._impl}"
        )
