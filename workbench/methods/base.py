"""The method interface: what the training loop needs from a method, and nothing more.

A method is an ``nn.Module`` holding its networks. The loop calls
:meth:`Method.training_step` with a batch and does backward / optimiser step itself; a
method never calls ``.backward()``, ``.to(device)`` or ``optimizer.step()``. Hooks let a
method act after the optimiser step (e.g. an EMA teacher) and after validation (e.g. the
BMA pool). Anything a method wants to record goes through :meth:`Method.emit` into the
run's ``events.jsonl``. Python-side state (pools, counters) goes in
``get_extra_state`` / ``set_extra_state`` so that checkpoints capture it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.losses import supervised_loss
from workbench.methods.options import parse_options
from workbench.nets.backbones import segmentation_net
from workbench.nets.fusion import DualEncoderUNet

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["Batch", "Method", "NoOptions", "fused_and_single_modality"]


@dataclass
class NoOptions:
    """Options of a method that has none."""


@dataclass
class Batch:
    """One training step's data; M is the number of modalities (channel order = ``modalities``).

    Attributes:
        x_l: labeled images ``(B, M, H, W)`` (for ``training_data = "images"``: any training slices).
        y_l: their binary labels ``(B, 1, H, W)``; None for ``training_data = "images"``.
        x_u: unlabeled images ``(K, M, H, W)``, or None for supervised methods.
    """

    x_l: Tensor
    y_l: Tensor | None
    x_u: Tensor | None = None


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement training_step and predict."""

    name: ClassVar[str] = ""
    #: whether the loop must draw unlabeled batches for this method
    uses_unlabeled: ClassVar[bool] = False
    #: whether :meth:`on_validation_end` reads the per-epoch scores (PReL's teachers); with
    #: ``val_scores="if_used"`` the loop scores the selection patients only for such methods
    reads_validation: ClassVar[bool] = False
    #: dataclass of the method's options (``--set options.NAME=VALUE``), parsed into ``self.opts``
    options_class: ClassVar[type] = NoOptions
    #: what the loop draws for each step: ``"labeled"`` (labeled slices and their labels, plus
    #: unlabeled slices when ``uses_unlabeled``) or ``"images"`` (every non-blank slice of the
    #: training patients, labels never read, each batch of distinct slices: a self-supervised
    #: pre-training; ``Batch.x_l`` holds them, ``y_l`` is None)
    training_data: ClassVar[str] = "labeled"
    #: whether the method segments (:meth:`predict`); a pre-training does not: the loop
    #: neither validates nor tests it
    segments: ClassVar[bool] = True
    #: the training batches' augmentation the method's paper uses, a subset of
    #: :data:`workbench.augment.AUGMENTATIONS` (the run's ``augment`` setting can override it)
    augmentation: ClassVar[tuple[str, ...]] = ()
    #: the ``spatial_dims`` the method trains with: 2 (slices) and, where its networks allow, 3
    spatial_dims_supported: ClassVar[tuple[int, ...]] = (2,)
    #: the per-modality networks the run's ``backbone`` may name (:mod:`workbench.nets.backbones`)
    backbones_supported: ClassVar[tuple[str, ...]] = ("unet",)

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.config = config
        self.opts = parse_options(self.options_class, dict(config.options), self.name)
        #: optimiser steps per epoch; the loop sets it when ``steps_per_epoch=0`` (one pass) is
        #: resolved against the data
        self.steps_per_epoch = max(config.steps_per_epoch, 1)
        #: 2: inputs ``(B, M, H, W)``; 3: ``(B, M, X, Y, Z)`` (patches in training, whole volumes
        #: through sliding windows at inference)
        self.spatial_dims = getattr(config, "spatial_dims", 2)
        self.backbone = getattr(config, "backbone", "unet")
        self._emit: Callable[..., None] | None = None
        self.epoch = 0  # set by the loop before each epoch

    def make_net(self, in_channels: int = 1, dropout: bool = True) -> nn.Module:
        """The run's backbone (``unet`` or ``vnet``) in its ``spatial_dims``, one logit channel."""
        return segmentation_net(
            self.backbone, in_channels, 1, self.config.base_channels, self.spatial_dims, dropout=dropout
        )

    def make_fused_net(self) -> nn.Module:
        """One network on every modality, for option ``input``: ``both``, the dual-encoder U-Net
        (:class:`~workbench.nets.DualEncoderUNet`, Meng's MM- baselines); ``concat``, the
        backbone on the modalities stacked as channels."""
        if self.opts.input == "both":
            if self.backbone != "unet":
                raise ConfigError(
                    f"option input='both' builds the dual-encoder U-Net; backbone={self.backbone!r} "
                    "takes input=single or concat"
                )
            return DualEncoderUNet(len(self.modalities), 1, self.config.base_channels, spatial_dims=self.spatial_dims)
        return self.make_net(len(self.modalities))

    def bind_events(self, emit: Callable[..., None]) -> None:
        """Called by the loop: ``emit(event, **fields)`` writes to the run's event log."""
        self._emit = emit

    def emit(self, event: str, **fields: Any) -> None:
        if self._emit is not None:
            self._emit(event, **fields)

    def sup_loss(self, logits: Tensor, target: Tensor, weights: str = "run") -> Tensor:
        """The supervised loss: ``weights="run"``, Semi-CML's eq. 3 with the run's weights
        (``bce_weight * BCE + dice_weight * Dice``); ``"paper"``, the plain ``BCE + Dice`` of
        the papers that add the two unweighted (Meng eq. 4, CMC eq. 2)."""
        if weights == "paper":
            return supervised_loss(logits, target, 1.0, 1.0)
        return supervised_loss(logits, target, self.config.bce_weight, self.config.dice_weight)

    def epoch_time(self, step: int) -> float:
        """Training time in (fractional) epochs after ``step`` optimiser steps: what the
        ramps of :mod:`workbench.schedules` read."""
        return step / self.steps_per_epoch

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        """Named losses for one batch; key ``loss`` is what the loop back-propagates."""
        raise NotImplementedError

    def forward(self, batch: Batch, step: int) -> dict[str, Tensor]:
        """The training step, so that DistributedDataParallel (which hooks ``forward``) can
        wrap a method (see :mod:`workbench.distributed`)."""
        return self.training_step(batch, step)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Foreground probabilities ``(B, 1, H, W)`` per modality name, from ``(B, M, H, W)``."""
        raise NotImplementedError

    def features(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """Intermediate feature maps of each modality's U-Net, for looking inside (t-SNE).

        The default serves methods that keep one U-Net per modality in ``self.nets``
        (an ``nn.ModuleDict``); modality i's network sees channel i. Call it in eval mode
        under ``torch.no_grad()``; it runs the networks like :meth:`predict` does.

        Args:
            images: ``(B, M, H, W)``, channels in ``self.modalities`` order.

        Returns:
            modality -> ``{"bottleneck": (B, 16*base, H/16, W/16), "decoder": (B, base, H, W)}``.

        Raises:
            ConfigError: the method has no per-modality networks (e.g. ``mm-supervised``,
                whose two encoders share one decoder).
        """
        nets = getattr(self, "nets", None)
        per_modality = isinstance(nets, nn.ModuleDict) and all(
            m in nets and hasattr(nets[m], "forward_with_features") for m in self.modalities
        )
        if not per_modality:
            raise ConfigError(f"method {self.name!r} has no per-modality networks to take features from")
        return {m: nets[m].forward_with_features(images[:, i : i + 1])[1] for i, m in enumerate(self.modalities)}

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Loss name -> the parameters the loop steps on that loss, one Adam each, in this
        order. Default: one group, every trainable parameter, on ``loss``."""
        return {"loss": [p for p in self.parameters() if p.requires_grad]}

    def adam_betas(self) -> tuple[float, float]:
        """Adam's (beta1, beta2) for every group; PyTorch's defaults unless a paper says."""
        return (0.9, 0.999)

    def epoch_samples(self, epoch: int, images: Tensor) -> dict[str, Any]:
        """Arrays to keep after ``epoch`` (``RUN/samples/epoch_NNNN.npz``), computed from the
        training ``images``; default none."""
        return {}

    def after_optimizer_step(self, step: int) -> None:
        """Hook after each optimiser step (EMA teachers)."""

    def on_validation_end(self, epoch: int, scores: dict[str, float]) -> None:
        """Hook after each epoch's validation; ``scores`` maps modality -> mean DSC."""


def fused_and_single_modality(
    net: Callable[[Tensor], Tensor], images: Tensor, modalities: list[str], logits: bool = True
) -> dict[str, Tensor]:
    """The predictions of a network that reads every modality as channels (the MM- rows):
    ``fused`` (every modality in) and ``<m> only`` (the other channels zeroed). ``net``
    gives logits (``logits=True``, a sigmoid is applied) or probabilities."""

    def probabilities(x: Tensor) -> Tensor:
        return torch.sigmoid(net(x)) if logits else net(x)

    out = {"fused": probabilities(images)}
    if len(modalities) > 1:
        for i, m in enumerate(modalities):
            only = torch.zeros_like(images)
            only[:, i] = images[:, i]
            out[f"{m} only"] = probabilities(only)
    return out
