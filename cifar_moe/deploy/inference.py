"""The network wrapped for a runtime outside Lightning: uint8 in, probabilities out.

It preprocesses exactly as ``LitClassifier.classify`` and training do
(``cifar_moe.core.normalization``), so an exported graph needs nothing else.
"""

from torch import Tensor, nn

from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.training.tta import TTAMode, tta_logits


class UInt8Classifier(nn.Module):
    """A network wrapped for deployment: uint8 (B, 3, 32, 32) in, probabilities (B, C) out.

    Normalisation and test-time augmentation are inside, so a runtime needs nothing but this
    graph; resizing is not (any resizer of the caller's choice, to 32x32, comes first).

    Args:
        net: the trained network (logits from normalised float images).
        tta: ``none`` or ``flip``, as ``LitClassifier.tta``.
    """

    def __init__(self, net: nn.Module, tta: TTAMode = "none") -> None:
        super().__init__()
        self.net, self.tta = net, tta

    def forward(self, images: Tensor) -> Tensor:
        return tta_logits(self.net, normalize_uint8(images), self.tta).softmax(dim=-1)
