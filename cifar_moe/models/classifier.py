"""The classifier head."""

from torch import nn


class Classifier(nn.Sequential):
    """Global average pool -> Dropout -> Linear.

    Args:
        in_channels: channels of the last block.
        num_classes: number of output logits.
        dropout: dropout probability before the linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (B, C)
            nn.Dropout(dropout),
            nn.Linear(in_channels, num_classes),
        )
