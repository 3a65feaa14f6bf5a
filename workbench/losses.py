"""Losses shared by the methods.

Supervised loss of Semi-CML (eq. 3): ``L_sup = beta * L_bce + gamma * L_dice`` with
beta = 10, gamma = 7 (section 4.2). The Dice loss is the soft Dice of Milletari et al.
(2016) computed over the whole mini-batch (all pixels of all slices pooled), which is
defined even when some slices in the batch have no foreground.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["soft_dice_loss", "bce_loss", "supervised_loss"]


def soft_dice_loss(probs: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    """``1 - (2 sum(p*y) + eps) / (sum(p) + sum(y) + eps)`` over the whole batch.

    Args:
        probs: probabilities in [0, 1], any shape.
        target: same shape, values in [0, 1] (hard or soft labels).
    """
    probs = probs.float()
    target = target.float()
    intersection = (probs * target).sum()
    return 1.0 - (2.0 * intersection + eps) / (probs.sum() + target.sum() + eps)


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy on logits (numerically stable), mean over pixels."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def supervised_loss(logits: Tensor, target: Tensor, beta: float = 10.0, gamma: float = 7.0) -> Tensor:
    """Eq. 3: ``beta * BCE + gamma * Dice`` on logits ``(B, 1, H, W)`` and labels in [0, 1]."""
    return beta * bce_loss(logits, target) + gamma * soft_dice_loss(torch.sigmoid(logits.float()), target)
