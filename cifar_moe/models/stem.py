"""The stem: one 3x3 conv at full resolution."""

from torch import nn


class Stem(nn.Sequential):
    """3x3 conv (stride 1, padding 1, no bias) -> BatchNorm -> ReLU.

    Args:
        out_channels: stem width.
    """

    def __init__(self, out_channels: int = 48) -> None:
        super().__init__(
            nn.Conv2d(3, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
