"""The two routed expert blocks: plain (seed A) and residual bottleneck (seed B)."""

from torch import Tensor, nn

from cifar_moe.models.expert_conv import ExpertConv2d, ExpertImpl
from cifar_moe.models.router import Router, RouterSettings


class PlainExpertBlock(nn.Module):
    """Router on the input -> K experts -> BatchNorm -> Dropout -> ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        num_experts: K.
        dropout: dropout probability after BatchNorm.
        impl: expert-conv implementation, ``mixture``, ``aggregate`` or ``auto``.
        router: the router's settings (:class:`RouterSettings`; None: its defaults).
        init_spread: ``ExpertConv2d`` init_spread (1: independent experts).
        shared: ``ExpertConv2d`` shared (experts = one shared kernel + per-expert deltas).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_experts: int = 2,
        dropout: float = 0.0,
        impl: ExpertImpl = "auto",
        router: RouterSettings | None = None,
        init_spread: float = 1.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        self.router = Router(in_channels, num_experts,
                             **(router or RouterSettings()).router_kwargs())
        self.experts = ExpertConv2d(in_channels, out_channels, num_experts, impl,
                                    init_spread=init_spread, shared=shared)
        self.post = nn.Sequential(
            nn.BatchNorm2d(out_channels), nn.Dropout(dropout), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.post(self.experts(x, self.router(x)))


class ResidualExpertBlock(nn.Module):
    """1x1 bottleneck -> K experts -> BN -> Dropout, plus a skip, then ReLU.

    The router reads the block input (not the bottleneck), so it sees what the skip sees.
    The skip is the identity when shapes match, else a 1x1 conv + BN.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        num_experts: K.
        dropout: dropout probability on the expert branch.
        impl: expert-conv implementation, ``mixture``, ``aggregate`` or ``auto``.
        bottleneck_ratio: the 1x1 conv maps to max(out_channels // bottleneck_ratio, 1)
            channels. 4, as in ResNet bottlenecks: it divides the K experts' parameters
            and FLOPs by 4 against full-width experts, the block's main cost at K = 4.
        router: the router's settings (:class:`RouterSettings`; None: its defaults).
        init_spread: ``ExpertConv2d`` init_spread (1: independent experts).
        shared: ``ExpertConv2d`` shared (experts = one shared kernel + per-expert deltas).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_experts: int = 4,
        dropout: float = 0.0,
        impl: ExpertImpl = "auto",
        bottleneck_ratio: int = 4,
        router: RouterSettings | None = None,
        init_spread: float = 1.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        mid = max(out_channels // bottleneck_ratio, 1)
        self.router = Router(in_channels, num_experts,
                             **(router or RouterSettings()).router_kwargs())
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.experts = ExpertConv2d(mid, out_channels, num_experts, impl,
                                    init_spread=init_spread, shared=shared)
        self.post = nn.Sequential(nn.BatchNorm2d(out_channels), nn.Dropout(dropout))
        self.skip = nn.Identity()
        if in_channels != out_channels:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        branch = self.post(self.experts(self.reduce(x), self.router(x)))
        return self.act(branch + self.skip(x))
