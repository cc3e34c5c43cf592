"""The stems: one 3x3 conv at full resolution, or airbench's frozen patch-whitening conv."""

import torch
from torch import Tensor, nn


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


class WhiteningStem(nn.Module):
    """A 2x2 conv whose filters whiten the training images' 2x2 patches, then GELU
    (Keller Jordan's airbench; the idea is Coates & Ng's ZCA whitening of patches).

    The 12 filters are the eigenvectors of the patch covariance scaled by 1 / sqrt(eigenvalue),
    and their negatives (24 channels, so the ReLU-like GELU keeps both signs). The weights are
    set once from data (:meth:`init_from_images`, called at the start of a fresh fit) and
    frozen: a fixed decorrelated input lets the first trained layers learn faster on little
    data. Only the bias trains. The output is 31x31 (no padding), as in airbench.

    Args:
        out_channels: must be 24 (2 signs x 3 colours x 2 x 2 pixels); the CLI's stem_width.
        eps: added to the eigenvalues, so near-constant patch directions are not amplified.
    """

    PATCH = 2

    def __init__(self, out_channels: int = 24, eps: float = 5e-4) -> None:
        super().__init__()
        self.eps = eps
        self.conv = nn.Conv2d(3, out_channels, self.PATCH, padding=0, bias=True)
        self.conv.weight.requires_grad_(False)  # frozen: set from data, never trained
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))

    @torch.no_grad()
    def init_from_images(self, images: Tensor) -> Tensor:
        """Set the filters from normalised (N, 3, H, W) images; returns the eigenvalues."""
        k = self.PATCH
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, 3, H-1, W-1, k, k)
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)  # (P, 12)
        flat = flat - flat.mean(dim=0)
        eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat))
        filters = eigenvectors.T / torch.sqrt(eigenvalues + self.eps)[:, None]  # (12, 12)
        filters = filters.view(-1, 3, k, k)  # each row back to a (3, k, k) kernel
        self.conv.weight.copy_(torch.cat((filters, -filters)))
        self.conv.bias.zero_()
        return eigenvalues
