"""Batch mixing (mixup / cutmix) with a switch-off epoch, drawn and applied on the device.

The same mixes as torchvision.transforms.v2's MixUp and CutMix: each image is paired with
its neighbour in the (already shuffled) batch, mixup blends the pair with lambda ~
Beta(alpha, alpha), cutmix pastes a box of the neighbour and corrects lambda to the pasted
area after the box is clipped at the border. Unlike torchvision, every draw (the choice
between the two, lambda, the box centre) is a device tensor and both mixes are one masked
blend, so a training step never waits for the device to read a random number back. The
draws come from the device's generator: a seeded run is reproducible, with other draws
than torchvision's.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.core.errors import UserError
from cifar_moe.training.auto_settings import call_compiled_or_eager, compile_in_place


class BatchMixer:
    """Mixes a training batch with mixup or cutmix, chosen per batch.

    Args:
        num_classes: number of classes, for the soft targets.
        mixup_alpha: Beta(alpha, alpha) parameter of mixup; 0 turns mixup off.
        cutmix_alpha: Beta(alpha, alpha) parameter of cutmix; 0 turns cutmix off.
        cutmix_prob: probability of cutmix for a batch when both are on.
        until_epoch: mixing is applied in epochs [0, until_epoch); None = every epoch.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_prob: float = 0.5,
        until_epoch: int | None = None,
    ) -> None:
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise UserError(f"model.{name} is {value}; use 0 (off) or a positive alpha")
        if not 0.0 <= cutmix_prob <= 1.0:
            raise UserError(f"model.cutmix_prob is {cutmix_prob}; use a probability in [0, 1]")
        self.num_classes = num_classes
        self.until_epoch = until_epoch
        self.cutmix_prob = cutmix_prob if mixup_alpha and cutmix_alpha else float(
            bool(cutmix_alpha))  # one mixer on: it is always the one
        # Beta rows drawn together: (alpha_mixup, alpha_cutmix), the unused one harmless.
        self.alphas = (mixup_alpha or 1.0, cutmix_alpha or 1.0)
        self.enabled = bool(mixup_alpha or cutmix_alpha)
        self._beta: dict[torch.device, torch.distributions.Beta] = {}
        self._grids: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}
        self.blend = MixBlend(num_classes, self.cutmix_prob)

    def active(self, epoch: int) -> bool:
        """Whether batches of this epoch are mixed."""
        return self.enabled and (self.until_epoch is None or epoch < self.until_epoch)

    def schedule_warning(self, max_epochs: int | None) -> str | None:
        """A line for a run that ends before ``until_epoch``, else None."""
        until = self.until_epoch
        if until is None or max_epochs is None or not 0 <= max_epochs < until:
            return None
        return (f"model.mix_until_epoch ({until}) is beyond trainer.max_epochs ({max_epochs}): "
                "mixing never switches off in this run")

    def _lambdas(self, device: torch.device) -> Tensor:
        """(2,) draws: lambda for mixup and for cutmix, one op on the device."""
        if device not in self._beta:  # built once per device: no copy per step
            alphas = torch.tensor(self.alphas, device=device)
            self._beta[device] = torch.distributions.Beta(alphas, alphas)
        return self._beta[device].sample()

    def compile(self) -> None:
        """Fuse the blend (everything after the random draws) with ``torch.compile``, as
        ``model.compile`` does for the network: a few fused kernels instead of ~40 ops."""
        compile_in_place(self.blend)

    @torch.no_grad()
    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) images and (B,) labels -> mixed images and (B, C) soft targets."""
        lams = self._lambdas(images.device)
        if self.cutmix_prob == 0:  # mixup only: no box, so no uniform draws
            return call_compiled_or_eager(self.blend, images, labels, lams)
        rows, cols, sides = self._grid(images)
        # uniform draws: [0] picks cutmix, [1:] the box centre (row, column)
        u = torch.rand(3, device=images.device)
        return call_compiled_or_eager(self.blend, images, labels, lams, u, rows, cols, sides)

    def _grid(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Row and column positions and the (H, W) sides of the images, made once per
        device and size: no copy per step."""
        key = (images.device, *images.shape[-2:])
        if key not in self._grids:
            h, w = images.shape[-2:]
            device = images.device
            self._grids[key] = (torch.arange(h, device=device), torch.arange(w, device=device),
                                torch.tensor([h, w], dtype=torch.float32, device=device))
        return self._grids[key]


class MixBlend(nn.Module):
    """The mix given its draws: mixup's blend or cutmix's pasted box, and the soft targets.

    No state and no randomness, so ``torch.compile`` can fuse it (``BatchMixer.compile``).

    Args:
        num_classes: number of classes, for the soft targets.
        cutmix_prob: probability of cutmix for a batch (0: mixup only, 1: cutmix only).
    """

    def __init__(self, num_classes: int, cutmix_prob: float) -> None:
        super().__init__()
        self.num_classes, self.cutmix_prob = num_classes, cutmix_prob

    def forward(self, images: Tensor, labels: Tensor, lams: Tensor, u: Tensor | None = None,
                rows: Tensor | None = None, cols: Tensor | None = None,
                sides: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lam, weight = self._weights(images, lams, u, rows, cols, sides)
        mixed = torch.lerp(images.roll(1, 0), images, weight)
        onehot = F.one_hot(labels, self.num_classes).float()
        return mixed, torch.lerp(onehot.roll(1, 0), onehot, lam)

    def _weights(self, images, lams, u, rows, cols, sides) -> tuple[Tensor, Tensor]:
        """lambda (float32) and the own image's share (() or (H, W)): lambda for mixup, the
        keep mask for cutmix, whose lambda is the area kept after clipping."""
        if self.cutmix_prob == 0:  # mixup only
            return lams[0], _as(lams[0], images.dtype)
        keep = outside_box(u[1:], lams[1], rows, cols, sides).to(images.dtype)  # 1 = own
        area = _as(keep, torch.float32).mean()
        if self.cutmix_prob == 1:
            return area, keep
        use_cutmix = u[0] < self.cutmix_prob
        lam = torch.where(use_cutmix, area, lams[0])
        return lam, torch.where(use_cutmix, keep, _as(lam, images.dtype))


def _as(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """``tensor.to(dtype)`` without the (recorded, if free) op when it already is."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def outside_box(centre: Tensor, lam: Tensor, rows: Tensor, cols: Tensor,
                sides: Tensor) -> Tensor:
    """(H, W) bool, False in torchvision's cutmix box: half sides
    floor(0.5 sqrt(1 - lam) * side) around ``centre`` (fractions of H and W), clipped at the
    border; ``rows``/``cols`` are the pixel positions, ``sides`` (H, W) as floats."""
    middle = (centre * sides).floor()  # distributed as torch.randint(side)
    half = ((1.0 - lam).sqrt() * 0.5 * sides).floor()
    low, high = middle - half, middle + half
    inside_rows = (rows >= low[0]) & (rows < high[0])
    inside_cols = (cols >= low[1]) & (cols < high[1])
    return ~(inside_rows[:, None] & inside_cols[None, :])
