"""The in-memory form of one patient, shared by every loader and the slice builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Case"]


@dataclass
class Case:
    """One patient after loading and validation, before intensity preprocessing.

    Attributes:
        case_id: patient / case identifier (folder or file stem).
        images: modality name -> float32 volume of shape (X, Y, Z). All modalities share
            one grid (the reference modality's: CT for HECKTOR, the first MR for BraTS),
            reoriented to RAS (closest canonical), so axis 2 is axial (inferior->superior).
        label: uint8 volume (X, Y, Z) on the same grid with the dataset's raw label
            values (BraTS {0,1,2,4} or {0,1,2,3}; HECKTOR {0,1,2}), or None if unlabeled.
        spacing: voxel size in mm, in array axis order (x, y, z).
        affine: 4x4 voxel-to-world (RAS mm) affine of the shared grid.
        paths: modality name (and "label") -> the file it was read from.
    """

    case_id: str
    images: dict[str, np.ndarray]
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (X, Y, Z) shared by all modalities and the label."""
        return tuple(next(iter(self.images.values())).shape)  # type: ignore[return-value]
