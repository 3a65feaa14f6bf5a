"""CMC: cross modality collaboration + contrastive consistent learning (``cmc``).

Zhou, Sun, Deng, Chu, Dou, "Robust Semi-supervised Multimodal Medical Image Segmentation
via Cross Modality Collaboration", arXiv:2408.07341 (2024). One network
(:class:`~workbench.nets.cmc.CMCNet`): modality-specific encoders E^a, E^b, the MIA module
with its fusion layer at the bottleneck, decoders D^a, D^b (one prediction per modality).

Equations (section 2; F_ds^m = E^m(x^m), P^m = D^m(E^m(x^m)), Sim = cosine similarity):
    (1)  L_CSC = sum_c -log [ exp(Sim((F_ds^a)_c, (F_ds^b)_c)) / sum_c exp(Sim((F_ds^a)_c, (F_ds^b)_c)) ]
         channel-wise semantic consistency, c = 1..C the channels, minimised over E^a, E^b
    (2)  L_Sup = E[ L_CE(D^a(E^a(x_l^a)), y^a) + L_Dice(D^b(E^b(x_l^b)), y^b) ]   labeled pairs
    (3)  L_CAC = sum_j -log [ exp(Sim_Dice(P^a_j, P^b_j)) / sum_{j=1..M} exp(Sim_Dice(P^a_j, P^b_j)) ]
         cross-modal anatomical contrastive loss on the unlabeled pairs j, Sim_Dice of [13]
         (Semi-CML: 2 <p, q> / (|p| + |q|)), minimised over E^a, E^b, D^a, D^b
         L_total = L_Sup + alpha L_CSC + beta L_CAC                        (unnumbered, 2.2)
         alpha = 0.1 exp(-5 (1 - t/t_max))    ramp-up, weighs CSC
         beta  = 0.1 exp(-5 t/t_max)          ramp-down, weighs CAC
         t, t_max: current and maximum epoch.

Hyper-parameters (section 2.2, 3.2): Adam, lr 1e-5, batch size 4, 96^3 crops; encoders
fine-tuned from SAM-Med3D (multi-GPU) or the CLIP-driven Universal Model (one GPU); 10% and
20% labels; t_max is not given. The optimiser is the training loop's, which is Adam as in
the paper; its learning rate, schedule and batch sizes are the run's (``TrainConfig``), as
for every method. Neither eq. 1 nor eq. 3 has a stop-gradient: both losses move both
modalities' networks. The authors' released code is reported to compute its
semi-supervised losses under ``torch.no_grad()``, so there they train nothing; here they are
part of the graph (tests/methods/test_cmc.py checks their gradients).

Choices (where the paper is vague or our setting differs):
    * Encoders: CNN U-Net encoders trained from scratch (see :mod:`workbench.nets.cmc`),
      not SAM-Med3D's ViT with adapters: its weights cannot be downloaded here. Option
      ``encoder_weights`` loads a torch state dict into the encoders (one encoder's keys
      are copied into both, as the paper starts both from one pre-trained encoder; see
      :meth:`CMCNet.load_encoder_state`). It must match *our* encoder layout, so a
      SAM-Med3D checkpoint is rejected with a one-line error; a missing file or a shape
      mismatch is a one-line :class:`ConfigError` too. The file is read again on resume,
      before the checkpoint overwrites the weights.
    * Eqs. 1 and 3 as printed have the same index in the numerator and the denominator,
      so each term is ``-log softmax`` of the *matched* similarities only; their mean is
      >= log C with equality whenever all matched similarities are equal, whatever their
      value, so it does not pull matched pairs together. We read them as the contrastive
      (InfoNCE) losses their names and [13] describe: the denominator runs over the other
      modality's items, ``-log exp(S[i, i]) / sum_i' exp(S[i, i'])`` with ``S[i, i']`` the
      similarity of a's item i and b's item i' (channels in eq. 1, unlabeled slices in
      eq. 3), the positive included, anchors in modality a (as written). Option
      ``denominator=literal`` computes the printed form instead (for comparison).
    * Eq. 1 per slice: ``(F_ds^m)_c`` is channel c of the bottleneck flattened over space,
      ``S`` is a C x C cosine matrix per slice, no temperature (``csc_temperature`` = 1;
      the paper has none). The sums over c (eq. 1) and j (eq. 3) are means (a sum would
      scale alpha by C and beta by K), and eq. 1 is averaged over the slices.
    * CSC on every slice of the step (labeled and unlabeled: it needs no label); CAC on
      the K unlabeled pairs of the step (the paper's M unlabeled samples; needs K >= 2 so
      that there is a negative). Labeled and unlabeled slices go through the network in
      two forward passes (BatchNorm statistics per pass, as in :mod:`workbench.methods.semi_cml`).
    * Binary task with sigmoid outputs: P^m is the foreground probability map; Sim_Dice as
      :func:`workbench.losses.dice_similarity_matrix` (eps 1e-6).
    * Eq. 2 pairs CE with modality a and Dice with modality b; we read it as CE + Dice on
      each modality's prediction, 1:1 (``sup_weights="paper"``, default). Our data are
      paired, so y^a = y^b = y. ``sup_weights="run"`` uses the run's ``bce_weight`` /
      ``dice_weight`` (:meth:`Method.sup_loss`).
    * Ramps exactly as printed: the exponents are linear in t/t_max (not the usual
      ``exp(-5 (1 - t)^2)``), alpha runs from 0.1 e^-5 = 6.7e-4 to 0.1, beta from 0.1 down to
      6.7e-4. t is in fractional epochs (step / steps_per_epoch), t_max = the run's epochs
      (``ramp_epochs`` overrides it; t is clipped to t_max). ``alpha`` and ``beta`` set the
      0.1 factors.
    * Options ``specific_encoders``, ``mia``, ``csc``, ``cac`` switch the components of
      Table 2: baseline = shared encoder, no MIA, no CSC, no CAC; then modality-specific
      encoders; then the CMC strategy (MIA + CSC); then the CCL module (CAC).
    * ``fusion_levels``: the MIA module at the bottleneck only (the paper's fused feature
      comes from the encoders' output embedding) or at every level (:mod:`workbench.nets.cmc`).

Predictions: one row per modality (``predict`` keyed by modality name, decoder i <-> channel
i), as the paper evaluates (Table 1, Fig. 2: a score per modality). Inference needs both
modalities: each decoder sees the fused feature.

Remaining deviations from the paper, each with why:
    * CNN encoders trained from scratch instead of SAM-Med3D's fine-tuned ViT (weights not
      available here; see Choices), in 2D instead of 3D 96^3 crops.
    * The run's learning rate and schedule instead of Adam at 1e-5: the paper's rate is for
      fine-tuning a pre-trained encoder, far too small for one trained from scratch.
    * Eqs. 1 and 3 read as InfoNCE (see Choices; ``denominator=literal`` gives the printed form).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.errors import ConfigError
from workbench.methods.base import Batch, Method
from workbench.methods.options import check_choice
from workbench.methods.registry import register
from workbench.nets.cmc import FUSION_LEVELS, CMCNet

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = [
    "CMC",
    "CMCOptions",
    "channel_cosine_matrix",
    "csc_loss",
    "dice_cross_similarity",
    "cac_loss",
    "ramp_up",
    "ramp_down",
    "DENOMINATORS",
]

#: ``cross``: InfoNCE over the other modality's items | ``literal``: eqs. 1 and 3 as printed
DENOMINATORS = ("cross", "literal")


@dataclass
class CMCOptions:
    alpha: float = 0.1  # factor of the CSC ramp-up (section 2.2: 0.1)
    beta: float = 0.1  # factor of the CAC ramp-down (section 2.2: 0.1)
    ramp_epochs: float = -1.0  # t_max of both ramps; < 0: the run's epochs
    denominator: str = "cross"  # cross: InfoNCE reading of eqs. 1, 3 | literal: as printed
    csc_temperature: float = 1.0  # divides the cosine similarities of eq. 1 (paper: none)
    sup_weights: str = "paper"  # paper: CE + Dice per modality (eq. 2) | run: config bce/dice weights
    specific_encoders: bool = True  # Table 2: modality-specific encoders (False: one shared)
    mia: bool = True  # Table 2 (CMC strategy): MIA module + fusion layer
    fusion_levels: str = "bottleneck"  # MIA at the bottleneck (the paper) | all: at every level (nets/cmc.py)
    csc: bool = True  # Table 2 (CMC strategy): eq. 1
    cac: bool = True  # Table 2 (CCL module): eq. 3
    encoder_weights: str = ""  # path to a torch state dict for the encoders ("" = from scratch)


# ---------------------------------------------------------------------- ramps (section 2.2)
def ramp_up(t: float, t_max: float, factor: float = 0.1) -> float:
    """alpha = factor * exp(-5 (1 - t/t_max)), t clipped to [0, t_max]."""
    return factor * math.exp(-5.0 * (1.0 - min(max(t, 0.0), t_max) / t_max))


def ramp_down(t: float, t_max: float, factor: float = 0.1) -> float:
    """beta = factor * exp(-5 t/t_max), t clipped to [0, t_max]."""
    return factor * math.exp(-5.0 * min(max(t, 0.0), t_max) / t_max)


# ---------------------------------------------------------------------- losses (eqs. 1, 3)
def _contrast(similarity: Tensor, denominator: str) -> Tensor:
    """Mean over the rows i of ``-log exp(S[i, i]) / sum exp(...)`` for ``(..., N, N)`` S.

    ``cross``: the sum runs over row i (``sum_i' exp(S[i, i'])``); ``literal``: over the
    diagonal (``sum_i' exp(S[i', i'])``), as eqs. 1 and 3 are printed."""
    check_choice("denominator", denominator, DENOMINATORS)
    diagonal = similarity.diagonal(dim1=-2, dim2=-1)
    if denominator == "cross":
        return (torch.logsumexp(similarity, dim=-1) - diagonal).mean()
    return (torch.logsumexp(diagonal, dim=-1, keepdim=True) - diagonal).mean()


def channel_cosine_matrix(f_a: Tensor, f_b: Tensor) -> Tensor:
    """``S[n, c, c'] = Sim((F^a_n)_c, (F^b_n)_c')``, the cosine of channel maps flattened over space.

    Args:
        f_a: ``(B, C, *spatial)`` F_ds^a; f_b: the same shape, F_ds^b.

    Returns:
        ``(B, C, C)``.
    """
    if f_a.shape != f_b.shape:
        raise ValueError(f"eq. 1 needs features of one shape, got {tuple(f_a.shape)} and {tuple(f_b.shape)}")
    a = F.normalize(f_a.float().flatten(2), dim=2, eps=1e-8)
    b = F.normalize(f_b.float().flatten(2), dim=2, eps=1e-8)
    return a @ b.transpose(1, 2)


def csc_loss(f_a: Tensor, f_b: Tensor, temperature: float = 1.0, denominator: str = "cross") -> Tensor:
    """Channel-wise semantic consistency loss, eq. 1, mean over the channels and the slices.

    For each slice, anchor channel c of F_ds^a, positive channel c of F_ds^b; with
    ``cross`` every channel c' of F_ds^b is in the denominator, with ``literal`` the
    matched pairs c' only (see the module docstring).

    Args:
        f_a, f_b: ``(B, C, *spatial)`` features of modality a and b.
        temperature: divides the similarities (1: the paper).
        denominator: ``cross`` or ``literal``.
    """
    return _contrast(channel_cosine_matrix(f_a, f_b) / temperature, denominator)


def dice_cross_similarity(p_a: Tensor, p_b: Tensor, eps: float = 1e-6) -> Tensor:
    """``S[j, j'] = 2 <P^a_j, P^b_j'> / (|P^a_j| + |P^b_j'| + eps)``, Sim_Dice of eq. 3.

    Args:
        p_a, p_b: ``(K, ...)`` probability maps of modality a and b.

    Returns:
        ``(K, K)`` in [0, 1].
    """
    if p_a.shape != p_b.shape:
        raise ValueError(f"eq. 3 needs paired maps of one shape, got {tuple(p_a.shape)} and {tuple(p_b.shape)}")
    a, b = p_a.float().flatten(1), p_b.float().flatten(1)
    return 2.0 * (a @ b.T) / (a.sum(dim=1)[:, None] + b.sum(dim=1)[None, :] + eps)


def cac_loss(p_a: Tensor, p_b: Tensor, denominator: str = "cross") -> Tensor:
    """Cross-modal anatomical contrastive loss, eq. 3, mean over the K unlabeled pairs.

    Anchor P^a_j, positive P^b_j; with ``cross`` every P^b_j' is in the denominator, with
    ``literal`` the matched pairs only.

    Args:
        p_a, p_b: ``(K, ...)`` foreground probabilities of the K unlabeled slices, K >= 2.
        denominator: ``cross`` or ``literal``.
    """
    if p_a.shape[0] < 2:
        raise ValueError(f"eq. 3 needs K >= 2 unlabeled pairs (one positive, >= 1 negative), got {p_a.shape[0]}")
    return _contrast(dice_cross_similarity(p_a, p_b), denominator)


# ---------------------------------------------------------------------- the method
@register
class CMC(Method):
    """CMC network trained with L_Sup + alpha(t) L_CSC + beta(t) L_CAC (eqs. 1-3)."""

    name = "cmc"
    uses_unlabeled = True
    spatial_dims_supported = (2, 3)
    options_class = CMCOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        o = self.opts
        if len(self.modalities) != 2:
            raise ConfigError(f"{self.name} needs exactly 2 modalities, got {self.modalities}")
        check_choice("denominator", o.denominator, DENOMINATORS)
        check_choice("sup_weights", o.sup_weights, ("paper", "run"))
        if o.csc_temperature <= 0:
            raise ConfigError(f"option csc_temperature={o.csc_temperature}: must be > 0")
        if o.alpha < 0 or o.beta < 0:
            raise ConfigError(f"options alpha={o.alpha}, beta={o.beta}: must be >= 0")
        if o.ramp_epochs == 0:
            raise ConfigError("option ramp_epochs=0: must be > 0 (or < 0 for the run's epochs)")
        if o.cac and config.unlabeled_batch_size < 2:
            raise ConfigError(
                f"cmc's CAC loss (eq. 3) needs unlabeled_batch_size >= 2, got "
                f"{config.unlabeled_batch_size} (or --set options.cac=false)"
            )
        check_choice("fusion_levels", o.fusion_levels, FUSION_LEVELS)
        self.net = CMCNet(
            1,
            config.base_channels,
            spatial_dims=config.spatial_dims,
            specific_encoders=o.specific_encoders,
            mia=o.mia,
            fusion_levels=o.fusion_levels,
        )
        if o.encoder_weights:
            self.load_encoder_weights(o.encoder_weights)

    def load_encoder_weights(self, path: str) -> None:
        """Read a torch state dict from ``path`` into the encoders (one-line ConfigError if bad)."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"option encoder_weights: no such file {str(file)!r}")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  (any unpickling failure means an unusable file)
            raise ConfigError(
                f"option encoder_weights: cannot read {str(file)!r} as a torch state dict ({type(exc).__name__})"
            ) from exc
        if not isinstance(state, Mapping):
            raise ConfigError(
                f"option encoder_weights: {str(file)!r} holds a {type(state).__name__}, "
                "not a state dict (name -> tensor)"
            )
        self.net.load_encoder_state(state, repr(str(file)))

    def t_max(self) -> float:
        """t_max of the ramps in epochs: ``ramp_epochs``, or the run's epochs."""
        return self.opts.ramp_epochs if self.opts.ramp_epochs > 0 else float(self.config.epochs)

    def alpha(self, step: int) -> float:
        """Weight of L_CSC at optimiser step ``step``: the ramp-up, t in fractional epochs."""
        return ramp_up(self.epoch_time(step), self.t_max(), self.opts.alpha)

    def beta(self, step: int) -> float:
        """Weight of L_CAC at optimiser step ``step``: the ramp-down, t in fractional epochs."""
        return ramp_down(self.epoch_time(step), self.t_max(), self.opts.beta)

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        o = self.opts
        losses: dict[str, Tensor] = {}
        out_l = self.net.forward_with_features(batch.x_l)  # labeled pass
        for m, logits in zip(self.modalities, out_l.logits):
            losses[f"sup_{m}"] = self.sup_loss(logits, batch.y_l, self.opts.sup_weights)  # eq. 2
        total = losses[f"sup_{self.modalities[0]}"] + losses[f"sup_{self.modalities[1]}"]
        out_u = None
        if batch.x_u is not None and (o.csc or o.cac):
            out_u = self.net.forward_with_features(batch.x_u)  # unlabeled pass
        if o.csc:
            ds_a, ds_b = out_l.ds
            if out_u is not None:
                ds_a, ds_b = torch.cat([ds_a, out_u.ds[0]]), torch.cat([ds_b, out_u.ds[1]])
            losses["csc"] = csc_loss(ds_a, ds_b, o.csc_temperature, o.denominator)  # eq. 1
            alpha = self.alpha(step)
            losses["alpha"] = torch.tensor(alpha, device=total.device)  # all_mean stacks it with the losses
            total = total + alpha * losses["csc"]
        if o.cac and out_u is not None:
            p_a, p_b = (torch.sigmoid(z.float()) for z in out_u.logits)
            losses["cac"] = cac_loss(p_a, p_b, o.denominator)  # eq. 3
            beta = self.beta(step)
            losses["beta"] = torch.tensor(beta, device=total.device)
            total = total + beta * losses["cac"]
        losses["loss"] = total
        return losses

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Per-modality probabilities ``(B, 1, H, W)``; needs both modalities in ``images`` (B, 2, H, W)."""
        return {m: torch.sigmoid(z) for m, z in zip(self.modalities, self.net(images))}

    def features(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """Per modality: ``bottleneck`` F_ds^m (B, 16*base, H/16, W/16) and ``decoder``
        (B, base, H, W). Call in eval mode under ``torch.no_grad()``."""
        out = self.net.forward_with_features(images)
        return {m: {"bottleneck": out.ds[i], "decoder": out.decoder[i]} for i, m in enumerate(self.modalities)}
