"""Reading a folder of PNG/JPEG files of any size as 32x32 uint8 images, for ``predict``."""

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from cifar_moe.core.constants import IMAGE_SHAPE
from cifar_moe.core.errors import UserError
from cifar_moe.data.dataset import TensorImageDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File name endings read as images (any case); other files in the folder are left alone."""


def to_model_size(image: torch.Tensor) -> torch.Tensor:
    """A uint8 (..., 3, H, W) image squashed to (..., 3, 32, 32), antialiased.

    The whole picture is kept (no crop), so a non-square image is stretched; CIFAR-10's own
    images are square. The result stays uint8, as every other input to the model is.
    """
    size = list(IMAGE_SHAPE[1:])
    if list(image.shape[-2:]) == size:
        return image
    return F.resize(image, size, antialias=True)


@dataclass
class ImageFolder:
    """What :func:`read_image_folder` found: readable images and the files it skipped."""

    images: torch.Tensor  # (N, 3, 32, 32) uint8
    names: list[str]  # file names, in the order of ``images``
    resized: int = 0  # how many were not 32x32 and were resized
    unreadable: list[str] = field(default_factory=list)  # "name (reason)" per skipped file

    def dataset(self, transform: Callable) -> TensorImageDataset:
        """The images as a dataset; labels are -1 (unknown), rows are found by index."""
        return TensorImageDataset(self.images, torch.full((len(self.names),), -1), transform)

    @rank_zero_only
    def report(self) -> None:
        """At most two lines on stderr: what was resized and what was skipped."""
        if self.resized:
            print(f"predict: {self.resized} of {len(self.names)} images are not 32x32; "
                  "resized to 32x32 (whole image, aspect ratio not kept)", file=sys.stderr)
        if self.unreadable:
            print(f"predict: skipped {len(self.unreadable)} unreadable file(s): "
                  + ", ".join(self.unreadable), file=sys.stderr, flush=True)


def read_image_folder(folder: str | Path) -> ImageFolder:
    """Every PNG/JPEG directly in ``folder``, sorted by name; undecodable files are skipped.

    Greyscale, palette and alpha images become RGB; 16-bit PNGs are scaled to 8 bits.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"data.predict_dir {folder} is not a folder; pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images, names, unreadable, resized = [], [], [], 0
    for path in files:
        try:
            image = _decode(path)  # (3, H, W)
            small = to_model_size(image)
        except UnidentifiedImageError:
            unreadable.append(f"{path.name} (not a PNG/JPEG image)")
            continue
        except Exception as err:
            # PIL's decoders end in OSError, ValueError, SyntaxError, EOFError, struct.error,
            # DecompressionBombError, ... depending on the file: one bad image is skipped and
            # named, whatever the reason, and never ends the run.
            reason = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
            unreadable.append(f"{path.name} ({reason})")
            continue
        resized += list(image.shape[-2:]) != list(IMAGE_SHAPE[1:])
        images.append(small)
        names.append(path.name)
    if not images:
        found = f"only unreadable ones: {', '.join(unreadable)}" if unreadable else "none"
        raise UserError(
            f"data.predict_dir {folder} holds no readable PNG/JPEG file ({found}); "
            f"pass a folder with {'/'.join(IMAGE_SUFFIXES)} files"
        )
    return ImageFolder(torch.stack(images), names, resized, unreadable)


def _decode(path: Path) -> torch.Tensor:
    """One file as uint8 (3, H, W); an empty image is refused like an undecodable one."""
    with Image.open(path) as opened:
        image = pil_to_uint8(opened)
    if 0 in image.shape:
        raise ValueError(f"empty image {tuple(image.shape[1:])}")
    return image


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """A PIL image as uint8 (3, H, W) RGB, upright as its EXIF orientation says."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16/32-bit greyscale: RGB conversion would clip at 255
        deep = torch.from_numpy(np.asarray(image, dtype=np.int32))  # (H, W)
        grey = (deep.clamp(0, 65535) / 257).round().to(torch.uint8)
        return grey.expand(3, *grey.shape).clone()  # (3, H, W)
    return F.pil_to_tensor(image.convert("RGB"))
