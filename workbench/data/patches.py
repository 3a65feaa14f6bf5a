"""3D patch sampling for volumetric training: random crops from volumes held on the device.

The volumetric papers train on random patches (cross-view: 112x112x80 on LA, 96^3 on BraTS
2019; Meng: 96^3 / 112x112x96; CMC: 96^3). Two ways of choosing where a patch sits:

* ``foreground = 0`` (UA-MT's ``RandomCrop``, which the cross-view line follows): the patch
  corner uniform over the positions where it fits (MONAI ``RandSpatialCrop``).
* ``foreground = p > 0``: a fraction p of the patches is centred on a foreground voxel, the
  rest on a background voxel (MONAI ``RandCropByPosNegLabel`` with ``pos = p``,
  ``neg = 1 - p``), the foreground / background voxel lists computed once per volume
  (``map_binary_to_indices``), not at every step. Unlabeled volumes are always cropped
  uniformly (their labels are never read).

A volume smaller than the patch along an axis is zero-padded to the patch size once, when
the sampler is built (MONAI ``SpatialPad``, symmetric), so every patch has the same shape.

Randomness: each sample is seeded by ``(seed, step, its position in the step's global batch,
labeled or unlabeled)``, as the augmentation (:mod:`workbench.augment`) is, so a resumed run
and W processes draw the patches one uninterrupted process draws. The torch RNG is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import RandCropByPosNegLabel, RandSpatialCrop, SpatialPad
from monai.transforms.utils import map_binary_to_indices
from torch import Tensor

from workbench.augment import plain_tensor, sample_seed
from workbench.errors import ConfigError

__all__ = ["PatchSampler"]


class PatchSampler:
    """Random patches of ``patch`` voxels from volumes ``(M, X, Y, Z)`` and labels ``(1, X, Y, Z)``.

    Args:
        images: one tensor ``(M, X, Y, Z)`` per volume (any device; the patches stay there).
        labels: one ``(1, X, Y, Z)`` tensor per volume, or None for unlabeled volumes.
        patch: the patch size ``(px, py, pz)``.
        foreground: the fraction of labeled patches centred on a foreground voxel (0: uniform).
        seed: the run's seed.
    """

    def __init__(
        self,
        images: Sequence[Tensor],
        labels: Sequence[Tensor] | None,
        patch: Sequence[int],
        foreground: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.patch = tuple(int(p) for p in patch)
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ConfigError(f"patch={list(patch)}: need three sizes >= 1 (x, y, z)")
        if not 0.0 <= foreground <= 1.0:
            raise ConfigError(f"foreground={foreground}: must be in [0, 1]")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} volumes but {len(labels)} labels")
        if not images:
            raise ValueError("no volumes to sample patches from")
        self.foreground, self.seed = foreground, seed
        pad = SpatialPad(self.patch)
        self.images = [plain_tensor(pad(x)) for x in images]
        self.labels = [plain_tensor(pad(y)) for y in labels] if labels is not None else None
        for i, x in enumerate(self.images):
            if x.ndim != 4:
                raise ValueError(f"volume {i}: expected (M, X, Y, Z), got {tuple(x.shape)}")
            if self.labels is not None and self.labels[i].shape[1:] != x.shape[1:]:
                raise ValueError(f"volume {i}: label {tuple(self.labels[i].shape)} does not match {tuple(x.shape)}")
        self._indices: list[tuple[Tensor, Tensor] | None] = [None] * len(self.images)
        self._uniform = RandSpatialCrop(self.patch, random_size=False)

    def __len__(self) -> int:
        return len(self.images)

    def _pos_neg(self, v: int, seed: int) -> RandCropByPosNegLabel | None:
        if self._indices[v] is None:
            fg, bg = map_binary_to_indices(self.labels[v] > 0)
            self._indices[v] = (fg, bg)
        fg, bg = self._indices[v]
        if len(fg) == 0 or len(bg) == 0:  # one class only: MONAI would fail; crop uniformly instead
            return None
        crop = RandCropByPosNegLabel(
            self.patch, pos=self.foreground, neg=1.0 - self.foreground, num_samples=1, fg_indices=fg, bg_indices=bg
        )
        crop.set_random_state(seed=seed)
        return crop

    def sample(
        self, volumes: Sequence[int], step: int, positions: Sequence[int], stream: int = 0
    ) -> tuple[Tensor, Tensor | None]:
        """One patch from each of ``volumes`` (indices): images ``(B, M, *patch)`` and, for
        labeled volumes, labels ``(B, 1, *patch)``."""
        if len(volumes) != len(positions):
            raise ValueError(f"{len(volumes)} volumes for {len(positions)} positions")
        xs, ys = [], []
        for v, position in zip(volumes, positions):
            seed = sample_seed(self.seed, step, position, stream, 3)  # 3: not the augmentation's seed
            x = self.images[int(v)]
            y = self.labels[int(v)] if self.labels is not None else None
            crop = self._pos_neg(int(v), seed) if y is not None and self.foreground > 0 else None
            if crop is not None:
                both = torch.cat([x, y.to(x.dtype)])  # one crop for image and label together
                patch = plain_tensor(crop(both, label=y)[0])
            else:
                self._uniform.set_random_state(seed=seed)
                patch = plain_tensor(self._uniform(torch.cat([x, y.to(x.dtype)]) if y is not None else x))
            xs.append(patch[: x.shape[0]])
            if y is not None:
                ys.append(patch[x.shape[0] :].to(y.dtype))
        return torch.stack(xs), (torch.stack(ys) if ys else None)
