"""Losses shared by the methods.

Supervised loss of Semi-CML (eq. 3): ``L_sup = beta * L_bce + gamma * L_dice`` with
beta = 10, gamma = 7 (section 4.2). The Dice loss is the soft Dice of Milletari et al.
(2016) computed over the whole mini-batch (all pixels of all slices pooled), which is
defined even when some slices in the batch have no foreground.

Cross-modal consistency of Semi-CML:
    * eq. 5, MSE between the two modalities' probability maps;
    * eqs. 6-10, the area-similarity contrastive (ASC) loss. For K pairs of probability
      maps (F(x'_i), G(x''_i)) the 2K maps are stacked, the soft Dice similarity (eq. 8)
      of every pair is one matrix product, and for every anchor the positive is its pair in
      the other modality and the negatives are the other 2K - 2 maps (eq. 7: the anchor
      itself is excluded). ``l_asc`` (eq. 9) is cross-entropy over the similarities with
      no temperature, and eq. 10 averages it over the 2K anchors;
    * the NCE ablation of Table 3: the same contrastive structure with cosine similarity
      on the flattened maps (or on projection-head embeddings for NCE*) and a temperature.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "soft_dice_loss",
    "bce_loss",
    "supervised_loss",
    "mse_consistency",
    "dice_similarity_matrix",
    "cosine_similarity_matrix",
    "paired_contrastive_loss",
    "asc_loss",
    "nce_loss",
]


def _at_least_fp32(x: Tensor) -> Tensor:
    """Upcast half / bfloat16 (autocast outputs) to float32; keep float32 / float64 as is."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _fp32_matmuls(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on ``x``'s device: inside it a similarity matrix of fp32 inputs is computed
    in fp32 (under autocast a matmul runs in bf16 / fp16 whatever its inputs)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


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


def mse_consistency(probs_a: Tensor, probs_b: Tensor) -> Tensor:
    """Eq. 5: mean squared difference between two probability maps of the same shape."""
    return F.mse_loss(probs_a.float(), probs_b.float())


def dice_similarity_matrix(maps: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. 8 for every pair of N maps at once: ``S[i, j] = 2 <y_i, y_j> / (|y_i| + |y_j| + eps)``.

    Args:
        maps: ``(N, ...)`` probability maps; everything after the first axis is flattened.
        eps: keeps two empty maps at similarity 0 instead of 0/0 (not in the paper).

    Returns:
        ``(N, N)`` similarities in [0, 1] (1 on the diagonal for binary non-empty maps).
    """
    flat = _at_least_fp32(maps).flatten(1)
    with _fp32_matmuls(flat):  # autocast would run the products in bf16 / fp16
        sums = flat.sum(dim=1)
        return 2.0 * (flat @ flat.T) / (sums[:, None] + sums[None, :] + eps)


def cosine_similarity_matrix(vectors: Tensor, temperature: float = 1.0) -> Tensor:
    """Cosine similarity of every pair of N flattened vectors, divided by ``temperature``."""
    with _fp32_matmuls(vectors):
        flat = F.normalize(_at_least_fp32(vectors).flatten(1), dim=1)
        return (flat @ flat.T) / temperature


def paired_contrastive_loss(similarity: Tensor) -> Tensor:
    """Mean over the 2K anchors of ``-log softmax`` at the positive (eqs. 9-10).

    ``similarity`` is ``(2K, 2K)`` over the stacked items ``[a_1..a_K, b_1..b_K]``; the
    positive of anchor i is i + K (mod 2K), the anchor itself is excluded from the
    denominator, every other item is a negative.
    """
    n = similarity.shape[0]
    if n % 2 or n < 4:
        raise ValueError(f"need 2K items with K >= 2 (one positive, >= 2 negatives), got {n}")
    k = n // 2
    logits = similarity.masked_fill(torch.eye(n, dtype=torch.bool, device=similarity.device), float("-inf"))
    positives = (torch.arange(n, device=similarity.device) + k) % n
    return F.cross_entropy(logits, positives)


def asc_loss(pred_a: Tensor, pred_b: Tensor, return_matrix: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Area-similarity contrastive loss (eqs. 6-10) between K pairs of probability maps.

    Args:
        pred_a: ``(K, ...)`` probabilities of modality A (e.g. F(x')).
        pred_b: ``(K, ...)`` probabilities of modality B for the same K slices (G(x''), or
            the soft pseudo-labels P_s of eq. 15).
        return_matrix: also return the ``(2K, 2K)`` Dice similarity matrix (for logging).
    """
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"ASC needs paired maps of one shape, got {tuple(pred_a.shape)} and {tuple(pred_b.shape)}")
    matrix = dice_similarity_matrix(torch.cat([pred_a, pred_b]))
    loss = paired_contrastive_loss(matrix)
    return (loss, matrix) if return_matrix else loss


def nce_loss(emb_a: Tensor, emb_b: Tensor, temperature: float = 0.1) -> Tensor:
    """NCE ablation: the contrastive structure of ASC with cosine similarity / temperature.

    ``emb_a``, ``emb_b``: ``(K, ...)`` flattened probability maps (sup+NCE) or projection
    embeddings (sup+NCE*)."""
    if emb_a.shape != emb_b.shape:
        raise ValueError(f"NCE needs paired inputs of one shape, got {tuple(emb_a.shape)} and {tuple(emb_b.shape)}")
    return paired_contrastive_loss(cosine_similarity_matrix(torch.cat([emb_a, emb_b]), temperature))


def feature_discrepancy_loss(features: Tensor, other: Tensor) -> Tensor:
    """Conflict-based feature discrepancy of cross-view CML (Wu et al., MM '24, eq. 1).

    ``L_dis,i = 1 + f_i . f_(1-i) / (||f_i|| ||f_(1-i)||)`` with ``f_(1-i)`` detached (the
    paper's "copy without gradients"), so the loss moves only the network that made
    ``features``. Each item's feature map is flattened to one vector (the paper writes f
    as a vector); the result is the mean over the batch, in [0, 2].

    Args:
        features: ``(B, ...)`` encoder output ``f_i`` of subnet i.
        other: ``(B, ...)`` encoder output ``f_(1-i)`` of the other subnet, same shape.
    """
    if features.shape != other.shape:
        raise ValueError(f"discrepancy needs features of one shape, got {tuple(features.shape)}, {tuple(other.shape)}")
    a = _at_least_fp32(features).flatten(1)
    b = _at_least_fp32(other.detach()).flatten(1)
    return (1.0 + F.cosine_similarity(a, b, dim=1, eps=1e-8)).mean()


__all__ += ["feature_discrepancy_loss"]
