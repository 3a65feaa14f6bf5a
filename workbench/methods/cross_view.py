"""Cross-view mutual learning, CML (Wu, Wei, Chen, Ren, He, Pu, ACM MM '24).

Two subnets (encoder E_i, decoder D_i, i in {0, 1}) with the same architecture and
non-shared parameters (section 3.1; :class:`~workbench.nets.cross_view.CrossViewPair`).
A "view" in the paper is what a subnet's encoder extracts from the *same* input: the
conflict-based feature learning (CFL) loss of eq. 1 pushes the two encoders' features
apart, so the two decoders make complementary predictions. The subnets get the same
images; they differ by their (random, separate) initialisation and by eq. 1.

Equations (f_i = E_i(X), P_i = D_i(E_i(X)), bar f = f without gradient):
    (1)  L_dis,i^a = 1 + f_i^a . bar f_(1-i)^a / (||f_i^a|| ||bar f_(1-i)^a||),
         L_dis^a = L_dis,0^a + L_dis,1^a,  a in {l, u}
    (2)  L_sup,i^l(P_i, Y) = (L_ce(P_i, Y) + L_dice(P_i, Y)) / 2
    (3)  L_sup^u = L_sup,0^u(P_0^u, ~Y_1^u) + L_sup,1^u(P_1^u, ~Y_0^u)      (CFL; replaced by eq. 10)
    (4)  L = L_sup^l + lambda1 L_sup^u + lambda2 L_dis,   L_dis = L_dis^u + L_dis^l
    (5)  X_mix^l = X_u^l * M + X_v^l * (1 - M)                              CutMix, labeled
    (6)  Y_mix^l = Y_u^l * M + Y_v^l * (1 - M)
         M: the "zero-centred mask" of BCP, ones with a block of zeros beta H x beta W
            (x beta L in 3D), beta in (0, 1), pasted at a random position ("a random crop")
    (7)  L_sup^l = L_sup,0^l(P_mix,0^l, Y_mix^l) + L_sup,1^l(P_mix,1^l, Y_mix^l)
    (8)  X_mix^u = X_p^u * M + X_q^u * (1 - M)                              CutMix, unlabeled
    (9)  Y_mix,i^u = ^Y_p,(1-i)^u * M + ^Y_q,i^u * (1 - M)                  heterogeneous labels
         ^Y_q,i = NMS(argmax(D_i(E_i(X_q^u))))
    (10) L_sup^u = L_sup,0^u(P_mix,0^u, Y_mix,0^u) + L_sup,1^u(P_mix,1^u, Y_mix,1^u)
         (in CML the features of eq. 1 are f_i^a = E_i(X_mix^a))
    (11) L_pre = L_sup^l + lambda2 L_dis^l                                  pre-training
         self-training: eq. 4 with eqs. 7 and 10, starting from the pre-trained weights
         test (section 3.3): Y_test = argmax((P_test,0 + P_test,1) / 2)

Hyper-parameters (section 4.2, 4.5): lambda1 = 1, lambda2 = 0.2, beta = 2/3 for LA and
BraTS2019 (3D V-Net, 96^3 patches); lambda1 = 0.5, lambda2 = 0.1, beta = 1/2 for ACDC
(2D U-Net, 256^2); pre-training / self-training iterations 2k / 15k (LA), 10k / 30k
(BraTS2019, ACDC); SGD, lr 0.01; batch 8 = 4 labeled + 4 unlabeled (LA, BraTS), 24 (ACDC);
"random cropping, flipping, and rotation" (section 4.2): ``augmentation = crop, flip,
rotate`` (:mod:`workbench.augment`; the loop applies it before CutMix).
Defaults here: the BraTS2019 values (our task is the brain-tumour one; 2D slices of it),
lambda1 = 1, lambda2 = 0.2, beta = 2/3 (``--set options.beta=0.5`` etc. for ACDC's), and
pre-training for 25% of the epochs (10k of 10k + 30k). The optimiser, learning rate and
its schedule belong to the training loop (Adam there), not to this method.

Variants (``variant``), the three rungs of Fig. 6 (section 4.6), all with the same stages:
    * ``cml`` (default): eq. 4 with eqs. 7 and 10 (CutMix, heterogeneous pseudo-labels);
      pre-training eq. 11 on CutMix-ed labeled batches.
    * ``cfl``: eq. 4 with eq. 2 and eq. 3 on the unmixed images (cross pseudo-supervision,
      ~Y_i = argmax(P_i), no NMS) plus L_dis; pre-training eq. 11 without CutMix.
    * ``cps``: ``cfl`` without L_dis (lambda2 is not used).
    Table 4's rows are ``cml`` with ``lambda2 = 0`` (no L_dis) or ``lambda1 = 0`` (no L_sup^u).
    Fig. 6 does not say whether CPS and CFL were pre-trained; they share CML's stages here so
    that the three rungs differ only by their losses and CutMix.

How the modalities enter (``input`` option). The paper's inputs are single images (LA,
ACDC are single-modality; its BraTS2019 setting follows URPC and does not say which of
the four sequences it feeds); nothing in CML depends on the channel count, so:
    * ``single`` (default): one cross-view pair per modality, each on its own modality
      channel, trained side by side on the same batches (the losses are summed; the pairs
      share nothing). ``predict`` and ``self.nets`` are keyed by modality name.
    * ``both``: all modalities stacked as the input channels of one pair
      (``self.nets["fused"]``). ``predict`` gives ``fused`` and, as in
      :mod:`~workbench.methods.mm_supervised`, ``<m> only`` with the other channels zeroed.
    ``self.nets`` is an ``nn.ModuleDict`` of :class:`CrossViewPair` (modality -> pair, or
    ``fused`` -> pair); a pair's ``forward_with_features`` gives both subnets' bottleneck and
    decoder maps concatenated along channels, so :meth:`features` (t-SNE) sees both views.

Readings and choices, each where the text leaves a detail open (train or eval mode, pairing) or our
binary 2D setting needs a reading of it (argmax, NMS, eq. 1 on 2D maps):
    * Binary sigmoid outputs: L_ce is BCE on logits and L_dice the batch-pooled soft Dice of
      :func:`~workbench.losses.soft_dice_loss`; eq. 2 is ``(BCE + Dice) / 2``, i.e.
      ``supervised_loss(logits, y, 0.5, 0.5)``. This is the paper's loss, not the run's
      ``bce_weight`` / ``dice_weight`` (``Method.sup_loss``), which are not used here.
      argmax over {background, foreground} is ``sigmoid > 0.5``.
    * "NMS [4]" on the argmax map (eq. 9; [4] is Canny's edge detector, which does not
      apply to a label map) is read as keeping the largest connected component of the
      foreground, per 2D slice, 8-connected (per 3D patch, 26-connected, with
      ``spatial_dims=3``; ``scipy.ndimage.label``); an empty map stays empty, ties keep the
      first component in scan order.
    * eq. 1 on 2D bottlenecks ``(B, C, h, w)``: each item's map is flattened to one vector,
      the cosine is per item, then averaged over the batch.
    * Pairs for CutMix: image k of a batch is mixed with image ``(k - s) mod B``,
      ``s = max(1, B // 2)`` (a roll; batches are already random draws), so the mixed
      batch has B items and no image is paired with itself when B >= 2. The same pairing
      serves eqs. 5-6 (labeled batch) and 8-9 (unlabeled batch).
    * M: the zero block's side is the integer nearest beta * H with the parity of H,
      likewise for W (area about beta^2 H W). Its position is drawn uniformly among those
      where the block fits, at every step, once for the labeled and once for the
      unlabeled batch (one block per batch), from the run's torch RNG (exact resume), as
      the authors' code (after BCP) does; "paste a random crop" (section 3.2).
      ``cutmix_position="centre"`` keeps it at the centre of the slice (equal margins),
      where on the built-in data nearly all of the unlabeled tumour falls inside the block
      and eq. 9 then gives each subnet mostly its own labels.
    * Pseudo-labels: the unmixed X_p, X_q go through both subnets without gradient, in the
      current (train) mode, as a separate forward pass; labeled, unlabeled-mixed and
      pseudo-label passes are separate (BatchNorm batch statistics per pass, as in
      :mod:`~workbench.methods.semi_cml`).
    * Stages by epoch: epochs 1..P pre-train (eq. 11, labeled data only), epochs P+1..
      self-train (eq. 4); ``pretrain_epochs`` P, default round(0.25 * epochs). A ``stage``
      event marks the first step of each stage. The network simply continues (the loop's
      optimiser and schedule are not reset).

Remaining deviations from the paper, each with why:
    * By default 2D slices and the workbench U-Net pair
      (:class:`~workbench.nets.cross_view.CrossViewPair`), the setting of the CPU grids;
      ``spatial_dims=3, backbone="vnet"`` with ``patch`` 112 x 112 x 80 or 96^3 is the paper's
      (the grids ``cross-view-la-gpu`` and ``cross-view-brats2019-gpu`` set it).
    * By default Adam with the loop's warm-up multi-step schedule; the paper's SGD at lr 0.01
      is ``optimizer="sgd"`` (momentum 0.9; ``lr_schedule="poly"``, the decay of the code it
      follows: the paper gives only the initial rate), as its grids set. Iterations are epochs
      x ``steps_per_epoch`` (those grids: 2k + 15k and 10k + 30k).
    * In 2D, ``crop`` is a random shift of the whole slice (:mod:`workbench.augment`), not a
      patch crop: the slices are already the network's input size; in 3D the random patch is
      the crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.losses import feature_discrepancy_loss, supervised_loss
from workbench.methods.base import Batch, Method, fused_and_single_modality
from workbench.methods.options import INPUTS, check_choice
from workbench.methods.registry import register
from workbench.nets.backbones import BACKBONES
from workbench.nets.cross_view import CrossViewPair

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = [
    "CrossView",
    "CrossViewOptions",
    "zero_block_mask",
    "random_block_mask",
    "VARIANTS",
    "cutmix",
    "partner",
    "largest_component",
    "pseudo_labels",
    "heterogeneous_targets",
    "paper_sup_loss",
    "INPUTS",
]

PRETRAIN_FRACTION = 10 / (10 + 30)  # BraTS2019 and ACDC: 10k pre-training, 30k self-training iterations
#: the rungs of Fig. 6 (module docstring)
VARIANTS = ("cml", "cfl", "cps")
#: where M's zero block sits: drawn at every step (the paper) or at the centre
CUTMIX_POSITIONS = ("random", "centre")


@dataclass
class CrossViewOptions:
    variant: str = "cml"  # cml (eqs. 4, 7, 10) | cfl (eqs. 3, 4) | cps (eq. 3, no L_dis): Fig. 6
    input: str = "single"  # single: one pair per modality | both: modalities stacked into one pair
    lambda1: float = 1.0  # eq. 4, weight of L_sup^u (LA, BraTS2019; ACDC 0.5)
    lambda2: float = 0.2  # eqs. 4, 11, weight of L_dis (LA, BraTS2019; ACDC 0.1)
    beta: float = 2 / 3  # side ratio of M's zero block (LA, BraTS2019; ACDC 1/2)
    pretrain_epochs: int = -1  # P: epochs 1..P pre-train (eq. 11); < 0: 25% of the epochs
    cutmix_position: str = "random"  # random: M's block drawn at every step (section 3.2) | centre


# ---------------------------------------------------------------------- building blocks
def block_side(n: int, beta: float) -> int:
    """The zero block's side on an axis of ``n`` voxels: the integer nearest ``beta * n`` with
    the parity of ``n`` (so that a centred block has equal margins)."""
    z = int(round(beta * n))
    if (n - z) % 2:  # move to the neighbour with the right parity that is closer to beta * n
        z = z + 1 if beta * n > z else z - 1
    return min(max(z, 0), n)


def zero_block_mask(
    spatial: Sequence[int],
    beta: float,
    corner: Sequence[int] | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """M of eqs. 5-9: ones, with a block of zeros about ``beta`` times each side (``beta H x
    beta W``, ``x beta L`` in 3D) whose first corner is ``corner`` (None: centred, equal
    margins). Returns ``(1, 1, *spatial)``."""
    sides = [block_side(n, beta) for n in spatial]
    corner = [(n - z) // 2 for n, z in zip(spatial, sides)] if corner is None else list(corner)
    if len(corner) != len(spatial) or any(not 0 <= c <= n - z for c, n, z in zip(corner, spatial, sides)):
        raise ValueError(f"a {'x'.join(map(str, sides))} block at {tuple(corner)} does not fit in {tuple(spatial)}")
    mask = torch.ones(1, 1, *spatial, device=device, dtype=dtype)
    mask[(..., *(slice(c, c + z) for c, z in zip(corner, sides)))] = 0
    return mask


def random_block_mask(
    spatial: Sequence[int], beta: float, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """:func:`zero_block_mask` with the block's corner drawn uniformly among the positions
    where it fits, from the global torch RNG (CPU stream: saved in the checkpoint)."""
    corner = [int(torch.randint(0, n - block_side(n, beta) + 1, (1,))) for n in spatial]
    return zero_block_mask(spatial, beta, corner, device, dtype)


def partner(x: Tensor) -> Tensor:
    """The CutMix partner of every item: item k gets item ``(k - s) mod B``, ``s = max(1, B // 2)``."""
    return torch.roll(x, shifts=max(1, x.shape[0] // 2), dims=0)


def cutmix(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Eqs. 5, 6, 8, 9: ``a * M + b * (1 - M)`` (a outside the zero block, b inside it)."""
    return a * mask + b * (1 - mask)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest foreground component of a boolean mask, 8-connected in 2D and 26-connected
    in 3D (empty stays empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def pseudo_labels(logits: Tensor) -> Tensor:
    """^Y of eq. 9 for binary logits ``(B, 1, *spatial)``: ``sigmoid > 0.5`` (the 2-class argmax),
    then the largest connected component of each slice (or 3D patch); float ``{0, 1}``, same device."""
    hard = (logits.detach().float() > 0).cpu().numpy()
    out = np.zeros_like(hard)
    for b in range(hard.shape[0]):
        for c in range(hard.shape[1]):
            out[b, c] = largest_component(hard[b, c])
    return torch.from_numpy(out).to(device=logits.device, dtype=torch.float32)


def heterogeneous_targets(hat_0: Tensor, hat_1: Tensor, mask: Tensor) -> list[Tensor]:
    """Eq. 9 for both subnets: ``Y_mix,i = ^Y_(1-i) * M + partner(^Y_i) * (1 - M)``.

    ``hat_i`` are subnet i's pseudo-labels of the unmixed unlabeled batch X_p; X_q is
    ``partner(X_p)``, so ``^Y_q,i = partner(hat_i)``. Subnet i learns the other subnet's
    labels outside the zero block and its own inside it."""
    hat = (hat_0, hat_1)
    return [cutmix(hat[1 - i], partner(hat[i]), mask) for i in (0, 1)]


def paper_sup_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Eq. 2 for a binary sigmoid output: ``(BCE + soft Dice) / 2``."""
    return supervised_loss(logits, target, 0.5, 0.5)


# ---------------------------------------------------------------------- the method
@register
class CrossView(Method):
    """Cross-view mutual learning: CFL (eq. 1) + CutMix with heterogeneous pseudo-labels
    (eqs. 5-10), pre-training (eq. 11) then self-training (eq. 4)."""

    name = "cross-view"
    uses_unlabeled = True
    augmentation = ("crop", "flip", "rotate")  # section 4.2
    spatial_dims_supported = (2, 3)
    backbones_supported = BACKBONES
    options_class = CrossViewOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        o = self.opts
        check_choice("input", o.input, INPUTS)
        check_choice("variant", o.variant, VARIANTS)
        check_choice("cutmix_position", o.cutmix_position, CUTMIX_POSITIONS)
        if not 0.0 < o.beta < 1.0:
            raise ConfigError(f"beta={o.beta}: the zero block's side ratio must be in (0, 1), e.g. 0.667")
        if o.lambda1 < 0 or o.lambda2 < 0:
            raise ConfigError(f"lambda1={o.lambda1}, lambda2={o.lambda2}: weights must be >= 0")
        self.pretrain_epochs = o.pretrain_epochs if o.pretrain_epochs >= 0 else round(PRETRAIN_FRACTION * config.epochs)
        if self.pretrain_epochs > config.epochs:
            raise ConfigError(f"pretrain_epochs={self.pretrain_epochs}: must be <= epochs={config.epochs}")
        if o.input == "single":
            self.nets = nn.ModuleDict(
                {
                    m: CrossViewPair(1, 1, config.base_channels, config.spatial_dims, self.backbone)
                    for m in self.modalities
                }
            )
        else:
            pair = CrossViewPair(len(self.modalities), 1, config.base_channels, config.spatial_dims, self.backbone)
            self.nets = nn.ModuleDict({"fused": pair})

    # ------------------------------------------------------------------ helpers
    def stage(self, epoch: int) -> str:
        """``pre-training`` for epochs 1..P, ``self-training`` after."""
        return "pre-training" if epoch <= self.pretrain_epochs else "self-training"

    def streams(self) -> list[tuple[str, slice]]:
        """(key in ``self.nets``, input channels) of every cross-view pair."""
        if self.opts.input == "both":
            return [("fused", slice(None))]
        return [(m, slice(i, i + 1)) for i, m in enumerate(self.modalities)]

    def _announce_stage(self, step: int) -> None:
        """A ``stage`` event at the first step of each stage (derived from epoch and step: resumes exactly)."""
        first = (self.epoch - 1) * self.steps_per_epoch  # the epoch's first step
        if step != first or self.epoch not in (1, self.pretrain_epochs + 1):
            return
        self.emit(
            "stage",
            stage=self.stage(self.epoch),
            pretrain_epochs=self.pretrain_epochs,
            lambda1=self.opts.lambda1,
            lambda2=self.opts.lambda2,
            beta=self.opts.beta,
            input=self.opts.input,
            variant=self.opts.variant,
            cutmix_position=self.opts.cutmix_position,
        )

    # ------------------------------------------------------------------ the step
    def _mask(self, images: Tensor) -> Tensor:
        """M for one batch (eqs. 5-9): at a new random position, or at the centre."""
        spatial = images.shape[2:]
        if self.opts.cutmix_position == "centre":
            return zero_block_mask(spatial, self.opts.beta, device=images.device, dtype=images.dtype)
        return random_block_mask(spatial, self.opts.beta, images.device, images.dtype)

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        self._announce_stage(step)
        self_training = self.stage(self.epoch) == "self-training"
        if self_training and batch.x_u is None:
            raise ValueError("cross-view self-training needs an unlabeled batch (batch.x_u)")
        mixing = self.opts.variant == "cml"
        x_l, y_l, x_u, mask_u = batch.x_l, batch.y_l, batch.x_u, None
        if mixing:
            mask_l = self._mask(batch.x_l)
            x_l, y_l = cutmix(batch.x_l, partner(batch.x_l), mask_l), cutmix(batch.y_l, partner(batch.y_l), mask_l)
            if self_training:  # eqs. 5, 6; eq. 8 with a mask of its own
                mask_u = self._mask(batch.x_u)
                x_u = cutmix(batch.x_u, partner(batch.x_u), mask_u)
        lambda2 = 0.0 if self.opts.variant == "cps" else self.opts.lambda2
        losses: dict[str, Tensor] = {}
        total = torch.zeros((), device=batch.x_l.device)
        for key, channels in self.streams():
            pair: CrossViewPair = self.nets[key]
            logits, feats = pair.forward_pair(x_l[:, channels])
            sup_l = paper_sup_loss(logits[0], y_l) + paper_sup_loss(logits[1], y_l)  # eqs. 2, 7
            dis_l = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])  # eq. 1
            losses[f"sup_l_{key}"], losses[f"dis_l_{key}"] = sup_l, dis_l
            if not self_training:
                total = total + sup_l + lambda2 * dis_l  # eq. 11
                continue
            assert batch.x_u is not None and x_u is not None
            if mixing:
                with torch.no_grad():  # ^Y_i on the unmixed images (X_p = x_u, X_q = partner(x_u))
                    hat = [pseudo_labels(out) for out in pair.forward_pair(batch.x_u[:, channels])[0]]
                targets = heterogeneous_targets(hat[0], hat[1], mask_u)  # eq. 9
                logits, feats = pair.forward_pair(x_u[:, channels])
            else:  # eq. 3: each subnet learns the other's argmax on the same unmixed images
                logits, feats = pair.forward_pair(x_u[:, channels])
                hat = [(out.detach() > 0).float() for out in logits]
                targets = [hat[1], hat[0]]
            sup_u = paper_sup_loss(logits[0], targets[0]) + paper_sup_loss(logits[1], targets[1])  # eqs. 3 / 10
            dis_u = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])  # eq. 1
            losses[f"sup_u_{key}"], losses[f"dis_u_{key}"] = sup_u, dis_u
            losses[f"pseudo_fg_{key}"] = (hat[0].mean() + hat[1].mean()) / 2
            total = total + sup_l + self.opts.lambda1 * sup_u + lambda2 * (dis_l + dis_u)  # eq. 4
        losses["loss"] = total
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Section 3.3: the mean of the two subnets' probabilities, per pair."""
        if self.opts.input == "single":
            return {m: self.nets[m].probabilities(images[:, c]) for m, c in self.streams()}
        return fused_and_single_modality(self.nets["fused"].probabilities, images, self.modalities, logits=False)

    def features(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """Both subnets' feature maps (concatenated along channels) per pair key (modality
        names, or ``fused``); see :meth:`CrossViewPair.forward_with_features`."""
        return {key: self.nets[key].forward_with_features(images[:, c])[1] for key, c in self.streams()}
