"""The training loop's one augmentation stage: random crop, flip and rotation, on the device.

A method declares the augmentation its paper trains with (``Method.augmentation``); the
run's ``augment`` setting keeps it (``method``, the default), switches it off (``none``) or
names another set (``crop,flip,rotate`` in any order and subset). What the papers say:

    * Semi-CML + PReL (section 4.1): none; slices are centre-cropped once, no augmentation.
    * Cross-view mutual learning (section 4.2): "random cropping, flipping, and rotation",
      following UA-MT, URPC and SS-Net -> ``crop, flip, rotate``.
    * Meng et al. (section 3, implementation details): "randomly cropped" -> ``crop``.
    * CMC and Multi-ConDoS name none; the mean teacher, UA-MT and CPS papers are not among
      the seed papers, so those baselines declare none either (``augment`` sets one when a
      comparison's setting needs it).

Each transform is MONAI's (``monai.transforms``), applied to image and label together, so
the two stay aligned voxel for voxel:

    * ``crop``: the slice zero-padded by an eighth of each side (:data:`CROP_PAD_FRACTION`),
      then a random crop of the slice's own size (``SpatialPadd`` + ``RandSpatialCropd``).
      The papers crop patches from larger volumes or slices; the built-in and prepared
      slices are already the network's input size, so a crop of the input size from a
      padded slice (a random shift of up to 1/8 of the side, the image moving over a zero
      background, which is what the preprocessing puts outside the body) is the reading
      that keeps every slice usable as a whole.
    * ``flip``: each spatial axis flipped with probability 1/2 (``RandFlipd``).
    * ``rotate``: a rotation by k * 90 degrees, k uniform in {0, 1, 2, 3} (``RandRotate90d``),
      as UA-MT's ``RandomRotFlip`` that the cross-view line uses; with ``flip`` every one of
      the 8 symmetries of the square is drawn.

In 3D (samples ``(C, X, Y, Z)``, the patches of :mod:`workbench.data.patches`) the random
patch *is* the crop, so ``crop`` adds nothing; ``flip`` flips each of the three axes with
probability 1/2 and ``rotate`` turns the axial (x, y) plane by k * 90 degrees, as UA-MT's
``RandomRotFlip`` does on its patches.

Randomness: each sample's transform is seeded by ``(run seed, step, the sample's position in
the step's global batch, labeled or unlabeled)``. A resumed run therefore draws exactly what
an uninterrupted one draws, and W processes (each augmenting its shard) draw what one process
draws for the whole batch. Nothing here touches the torch RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import Compose, RandFlipd, RandRotate90d, RandSpatialCropd, SpatialPadd
from torch import Tensor

from workbench.errors import ConfigError

__all__ = ["AUGMENTATIONS", "CROP_PAD_FRACTION", "Augmentation", "parse_augment", "plain_tensor", "sample_seed"]

#: the transforms, in the order they are applied
AUGMENTATIONS = ("crop", "flip", "rotate")
#: ``crop`` pads each side by this fraction of the slice's side before the random crop
CROP_PAD_FRACTION = 1 / 8


def sample_seed(*keys: int) -> int:
    """A 32-bit seed (what MONAI's RandomState takes) from integer keys such as (run seed, step,
    position in the global batch, stream): the same keys give the same seed on every process."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def plain_tensor(t: Tensor) -> Tensor:
    """A MONAI MetaTensor as a plain tensor (no metadata travels into the loss or the metrics)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def parse_augment(value: str, declared: Sequence[str]) -> tuple[str, ...]:
    """The transforms a run's ``augment`` setting names: ``method`` -> the method's declared set,
    ``none`` -> (), else a comma-separated subset of :data:`AUGMENTATIONS` (in their order)."""
    value = value.strip()
    if value == "method":
        names = tuple(declared)
    elif value in ("none", ""):
        names = ()
    else:
        names = tuple(n.strip() for n in value.split(","))
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(
            f"augment={value!r}: unknown transform {unknown[0]!r}; use method, none or a comma list of "
            + ", ".join(AUGMENTATIONS)
        )
    return tuple(n for n in AUGMENTATIONS if n in names)


class Augmentation:
    """The transforms ``names`` on slices ``(B, C, H, W)`` or patches ``(B, C, X, Y, Z)`` and
    their labels ``(B, 1, ...)``.

    ``augmentation(images, labels, step, positions, stream)`` returns new tensors on the
    input's device; ``positions`` are the samples' indices in the step's global batch and
    ``stream`` tells the labeled (0) and unlabeled (1) batches apart (module docstring)."""

    def __init__(self, names: Sequence[str], seed: int) -> None:
        self.names = tuple(names)
        self.seed = seed
        self._compose: dict[tuple[tuple[int, ...], bool], Compose] = {}

    def __bool__(self) -> bool:
        return bool(self.names)

    def _transforms(self, spatial: tuple[int, ...], with_label: bool) -> Compose:
        key = (spatial, with_label)
        if key not in self._compose:
            keys = ["image", "label"] if with_label else ["image"]
            steps = []
            if "crop" in self.names and len(spatial) == 2:  # in 3D the random patch is the crop
                height, width = spatial
                pad = (height + 2 * round(height * CROP_PAD_FRACTION), width + 2 * round(width * CROP_PAD_FRACTION))
                steps += [
                    SpatialPadd(keys, spatial_size=pad, mode="constant"),
                    RandSpatialCropd(keys, roi_size=(height, width), random_size=False),
                ]
            if "flip" in self.names:
                steps += [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(len(spatial))]
            if "rotate" in self.names:
                steps.append(RandRotate90d(keys, prob=1.0, max_k=3, spatial_axes=(0, 1)))
            self._compose[key] = Compose(steps)
        return self._compose[key]

    def __call__(
        self, images: Tensor, labels: Tensor | None, step: int, positions: Sequence[int], stream: int
    ) -> tuple[Tensor, Tensor | None]:
        if not self.names:
            return images, labels
        if len(positions) != images.shape[0]:
            raise ValueError(f"{len(positions)} positions for a batch of {images.shape[0]} images")
        transforms = self._transforms(tuple(images.shape[2:]), labels is not None)
        out_x, out_y = [], []
        with torch.no_grad():
            for k, position in enumerate(positions):
                transforms.set_random_state(seed=sample_seed(self.seed, step, position, stream))
                sample = {"image": images[k]}
                if labels is not None:
                    sample["label"] = labels[k]
                result = transforms(sample)
                out_x.append(plain_tensor(result["image"]))
                if labels is not None:
                    out_y.append(plain_tensor(result["label"]))
        x = torch.stack(out_x).to(images.dtype).contiguous()
        y = torch.stack(out_y).to(labels.dtype).contiguous() if labels is not None else None
        return x, y
