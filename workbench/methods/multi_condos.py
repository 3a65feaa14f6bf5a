"""Multi-ConDoS: self-supervised DSGAN pre-training, then supervised fine-tuning.

Zhang, Zhang, Shen, Lukasiewicz, Xu, "Multi-ConDoS: Multimodal Contrastive Domain Sharing
Generative Adversarial Networks for Self-Supervised Medical Image Segmentation"
(IEEE TMI 43(1), 2024). Two stages:

1. Pre-training (``workbench pretrain``, i.e. ``workbench train --method multi-condos`` with
   :data:`PRETRAIN_DEFAULTS`; the method :class:`MultiConDoS`, trained by the workbench
   loop): the DSGAN (:mod:`workbench.nets.dsgan`) learns to translate paired slices
   X <-> Y of two modalities, with no label, on the training patients' slices.
2. Fine-tuning (``workbench train --method supervised --init RUN``): modality X's U-Net
   starts from G_a's encoder E_a, the shared layers SL and D_a's first layers
   (:func:`~workbench.nets.dsgan.transfer_rows`), modality Y's from G_b's; then it is the
   ordinary supervised method on the labeled patients' tumour slices (the paper: "only
   the slices that contain the target objects"; 5% / 10% labels).

Notation: x, y a paired batch of X and Y slices; G_a: X => Y and G_b: Y => X the two
branches of the generator; x' = G_b(y), y' = G_a(x) the translation images; x'' = G_b(y'),
y'' = G_a(x') the reconstructions; F_z the SL feature map of image z (E_a + SL for X-domain
images, E_b + SL for Y-domain ones), flattened from dim 1; sim the cosine similarity.

Equations (section IV):
    (1)  L_ij = -log e^{sim(x^_i, y^_j)/t} / (e^{sim(x^_i, y^_j)/t} + sum_{x~ in Lambda^-} e^{sim(x^_i, x~)/t})
         the general contrastive loss (SimCLR) eq. 2 specialises
    (2)  l(x_i, y_i; theta; t) = -log e^{sim(F_xi, F_yi)/t} / (e^{sim(F_xi, F_yi)/t} + sum_z e^{sim(F_xi, F_z)/t})
    (3)  L_C = 1/|Gamma+| sum_{(x_i, y_i)} [l(x_i, y_i) + l(y_i, x_i)]
             + 1/|Gamma'+| sum_{(x'_i, y'_i)} [l(x'_i, y'_i) + l(y'_i, x'_i)]
    (4)  L_GAN = E_y[log Dis_Y(y)] + E_x[log(1 - Dis_Y(G_a(x)))]
               + E_x[log Dis_X(x)] + E_y[log(1 - Dis_X(G_b(y)))]
    (5)  L_T = E_x ||G_a(x) - y||_1 + E_y ||G_b(y) - x||_1                     (Pix2Pix)
    (6)  L_R = E_x ||G_b(G_a(x)) - x||_1 + E_y ||G_a(G_b(y)) - y||_1           (CycleGAN)
    (7)  L = L_GAN + gamma L_T + beta L_R + lambda L_C
    (8)  G* = argmin_G max_{Dis_X, Dis_Y} L

Hyper-parameters (section V, implementation details): gamma = 10, beta = 1, lambda = 0.1,
t = 0.1; Adam, lr 2e-4; batch 36 (BraTS) / 48 (HECKTOR); 200 epochs. Fine-tuning: Adam,
lr 2e-4, weight decay 1e-4, warm-up cosine schedule, 70 epochs (batch sizes 31-90).
Defaults here are CPU-scale (:data:`PRETRAIN_DEFAULTS`, 10 epochs); the paper's values are in comments.

Choices, each with the part of section IV or V it reads (widths and layer details are Table I's):
    * Eq. 2's sum over negatives is printed over Gamma+ (a typo); the text defines the
      dissimilar pairs as ``{F_xi, F_yj}, i != j``: cross-modal negatives only. So
      l(x_i, y_i) is the cross-entropy of row i of the N x N matrix sim(F_x, F_y)/t with
      target i, l(y_i, x_i) that of column i; |Gamma+| = N (SimCLR's NT-Xent would also
      use the same-modality items as negatives; the paper does not).
    * F is "the output of SL": the output of the last shared row's convs (upsampling k of
      Table I; for SL_1 ``(8f, h/8, w/8)``), flattened, no projection head (the paper
      says so). (x'_i, y'_i) = (G_b(y_i), G_a(x_i)); F_x' comes from E_a + SL (x' is an
      X-domain image), i.e. from the reconstruction pass G_a(x'), and F_y' from G_b(y').
    * GAN: eq. 4 with logits and binary cross-entropy, expectations = means over the
      PatchGAN's patches and the batch. The discriminators minimise
      ``1/2 [BCE(Dis(real), 1) + BCE(Dis(fake), 0)]`` each (Pix2Pix halves D's
      objective); the generator minimises the non-saturating ``BCE(Dis(fake), 1)``
      instead of ``log(1 - Dis(fake))`` (Goodfellow et al.; what Pix2Pix does).
    * ||.||_1 is the mean absolute error over pixels (Pix2Pix's L1), which matches the
      paper's magnitudes (L_T ~ 1e-2, L_R ~ 1e-1) better than a sum.
    * One generator step (eq. 7 with the discriminators frozen), then one step of both
      discriminators on the detached translations, per batch (CycleGAN's order); no
      image history pool; constant learning rate (no schedule is mentioned).
    * Adam betas (0.5, 0.999): the paper gives none; these are Pix2Pix's / CycleGAN's.
    * Data: the training patients of the split that fine-tuning will use (same
      ``split_seed`` / ``test_fraction`` / ``val_fraction``; labeled and unlabeled
      patients alike, labels never read), every axial slice except those where either
      modality is blank (constant): "only discard medical images that are all black".
      Validation and test patients are never seen; ``--init`` refuses a pre-training whose
      patients include the run's validation or test patients.
    * An epoch is ``steps_per_epoch`` batches; the CPU-scale default is 20, the paper's epoch
      is one pass, floor(N / B) batches: ``steps_per_epoch=0`` (the paper's 200 epochs are
      ``--epochs 200 --steps-per-epoch 0``; the run_start event records the resolved count).
      Each batch is drawn without replacement from a permutation seeded by (seed, epoch) and
      never holds a slice twice (eq. 2 would make it its own negative; the loop's
      ``training_data = "images"``).
    * Each of the generator's four passes (x, y, y', x') is its own BatchNorm batch.
    * Transfer (section IV-D): see :func:`workbench.nets.dsgan.transfer_rows`. With
      SL_1 and 3 decoder layers every tensor of G_a except the 1x1 output layer goes to
      X's U-Net (BatchNorm running statistics included); the output layer keeps the
      U-Net's random initialisation. Fine-tuning uses the workbench loop's schedule
      (warm-up multi-step) as every method does; ``--lr 2e-4`` gives the paper's rate.
    * Options (``--set options.NAME=VALUE``) switch the ablations: ``share=false`` is
      Table III's Multi-Con, ``lam=0`` its Multi-DoS, ``shared_layers`` Fig. 6's SL_1-3,
      ``gan`` / ``gamma`` / ``beta`` / ``lam`` = 0 the rows of Table V, ``decoder_layers``
      Table VIII's transfer strategies (0 = Encoder_SL ... 3 = Encoder_SL_D3).

Why one long module: the paper's losses, the DSGAN method and the transfer into a U-Net
(``--init``) belong to one method; the loop that trains it is the workbench loop.

Remaining deviations from the paper, each with why:
    * CPU-scale defaults (10 epochs of 20 steps, batch 8): the paper's 200 passes are
      ``--epochs 200 --steps-per-epoch 0`` with its batch size (36 / 48).
    * Fine-tuning uses the loop's warm-up multi-step schedule instead of warm-up cosine and
      the run's epochs instead of 70; ``--lr 2e-4`` and ``--set options.dropout=false`` give
      the paper's rate and its dropout-free U-Net (:mod:`workbench.methods.supervised`).
    * 2D slices as in the paper; the built-in data's two modalities as X and Y.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.errors import ConfigError, DataError
from workbench.methods.base import Batch, Method
from workbench.methods.options import parse_options
from workbench.methods.registry import register
from workbench.nets.dsgan import DSGAN, transfer_keys, transfer_rows
from workbench.nets.unet import UNet
from workbench.runs import load_checkpoint

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = [
    "KIND",
    "MultiConDoSOptions",
    "PRETRAIN_DEFAULTS",
    "check_options",
    "MultiConDoS",
    "Pretraining",
    "contrastive_pair_loss",
    "multimodal_contrastive_loss",
    "gan_generator_loss",
    "gan_discriminator_loss",
    "translation_loss",
    "reconstruction_loss",
    "read_pretraining",
    "read_samples",
    "transfer_to_unet",
]

#: ``kind`` in config.json and checkpoint of a pre-training made before it ran in the workbench
#: loop (its own loop, since removed): such a run still serves ``--init`` but cannot be resumed
KIND = "multi-condos-pretrain"
GENERATOR_PREFIX = "dsgan.generator.branches."


# ----------------------------------------------------------------------------- losses
def _at_least_fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def contrastive_pair_loss(f_a: Tensor, f_b: Tensor, temperature: float = 0.1) -> Tensor:
    """One half of eq. 3: ``1/N sum_i [l(a_i, b_i) + l(b_i, a_i)]`` with l of eq. 2.

    The positive of a_i is b_i; its negatives are the b_j, j != i (and symmetrically).

    Args:
        f_a: ``(N, ...)`` features of one modality's views, flattened from dim 1.
        f_b: ``(N, ...)`` features of the paired views of the other modality.
        temperature: t.

    Returns:
        A scalar; 0 for N = 1 (no negatives).
    """
    if f_a.shape != f_b.shape:
        raise ValueError(f"eq. 3 needs paired features of one shape, got {tuple(f_a.shape)}, {tuple(f_b.shape)}")
    za = F.normalize(_at_least_fp32(f_a.flatten(1)), dim=1)
    zb = F.normalize(_at_least_fp32(f_b.flatten(1)), dim=1)
    logits = za @ zb.T / temperature  # [i, j] = sim(F_ai, F_bj) / t
    target = torch.arange(logits.shape[0], device=logits.device)
    # mean over i of -log softmax: l(a_i, b_i) over rows, l(b_i, a_i) over columns (eq. 2)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def multimodal_contrastive_loss(
    f_x: Tensor, f_y: Tensor, f_xp: Tensor, f_yp: Tensor, temperature: float = 0.1
) -> Tensor:
    """Eq. 3: L_C over the real pairs (x_i, y_i) plus the translated pairs (x'_i, y'_i)."""
    return contrastive_pair_loss(f_x, f_y, temperature) + contrastive_pair_loss(f_xp, f_yp, temperature)


def gan_generator_loss(logits_fake_y: Tensor, logits_fake_x: Tensor) -> Tensor:
    """Generator side of eq. 4 (non-saturating): ``BCE(Dis_Y(G_a(x)), 1) + BCE(Dis_X(G_b(y)), 1)``."""
    return F.binary_cross_entropy_with_logits(
        logits_fake_y, torch.ones_like(logits_fake_y)
    ) + F.binary_cross_entropy_with_logits(logits_fake_x, torch.ones_like(logits_fake_x))


def _dis_loss(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * (
        F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    )


def gan_discriminator_loss(real_y: Tensor, fake_y: Tensor, real_x: Tensor, fake_x: Tensor) -> Tensor:
    """Minus eq. 4 as the discriminators minimise it, each halved (Pix2Pix).

    ``1/2 [BCE(Dis_Y(y), 1) + BCE(Dis_Y(G_a(x)), 0)] + 1/2 [BCE(Dis_X(x), 1) + BCE(Dis_X(G_b(y)), 0)]``
    on logits, each BCE a mean over patches and batch.
    """
    return _dis_loss(real_y, fake_y) + _dis_loss(real_x, fake_x)


def translation_loss(y_fake: Tensor, y: Tensor, x_fake: Tensor, x: Tensor) -> Tensor:
    """Eq. 5: ``mean|G_a(x) - y| + mean|G_b(y) - x|``."""
    return (y_fake - y).abs().mean() + (x_fake - x).abs().mean()


def reconstruction_loss(x_rec: Tensor, x: Tensor, y_rec: Tensor, y: Tensor) -> Tensor:
    """Eq. 6: ``mean|G_b(G_a(x)) - x| + mean|G_a(G_b(y)) - y|``."""
    return (x_rec - x).abs().mean() + (y_rec - y).abs().mean()


# ----------------------------------------------------------------------------- the model


@dataclass
class MultiConDoSOptions:
    gamma: float = 10.0  # weight of L_T (eq. 7; paper: 10)
    beta: float = 1.0  # weight of L_R (eq. 7; paper: 1)
    lam: float = 0.1  # lambda, weight of L_C (eq. 7; paper: 0.1)
    gan: float = 1.0  # weight of L_GAN (eq. 7: 1; 0 drops it and the discriminators, Table V)
    temperature: float = 0.1  # t of eq. 2 (paper: 0.1)
    shared_layers: int = 1  # k of SL_ku^kd, Table I (paper's best, Fig. 6: 1)
    share: bool = True  # false: SL rows not shared (Table III's Multi-Con)
    decoder_layers: int = 3  # D_a rows transferred after SL (Table VIII; paper: 3)
    disc_channels: int = 0  # PatchGAN first width; 0: 2 * base_channels (64 at f = 32, Pix2Pix)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam's; not in the paper (Pix2Pix's)
    samples: int = 4  # slices whose A->B->A translations are saved each epoch (RUN/samples)


#: the TrainConfig values ``workbench pretrain`` starts from (section V: Adam, lr 2e-4, no schedule
#: is mentioned: constant; no weight decay); epochs at CPU scale (paper: 200)
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "method": "multi-condos",
    "lr": 2e-4,
    "weight_decay": 0.0,
    "warmup_epochs": 0,
    "milestones": [],
    "epochs": 10,
}


def check_options(opts: MultiConDoSOptions) -> None:
    """One-line ConfigError for an option out of range."""
    for name in ("gamma", "beta", "lam", "gan"):
        if getattr(opts, name) < 0:
            raise ConfigError(f"option {name}={getattr(opts, name)}: must be >= 0")
    if opts.temperature <= 0:
        raise ConfigError(f"option temperature={opts.temperature}: must be > 0")
    if opts.disc_channels < 0:
        raise ConfigError(f"option disc_channels={opts.disc_channels}: must be >= 0 (0: 2 * base_channels)")
    if len(opts.betas) != 2 or not all(0.0 <= v < 1.0 for v in opts.betas):
        raise ConfigError(f"option betas={opts.betas}: need two values in [0, 1)")
    if opts.samples < 0:
        raise ConfigError(f"option samples={opts.samples}: must be >= 0")
    transfer_rows(opts.shared_layers, opts.decoder_layers)  # checks both against Tables I and VIII


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No gradients for ``module``'s parameters inside the block (the frozen Dis of eq. 8's min)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


@register
class MultiConDoS(Method):
    """Multi-ConDoS pre-training: a DSGAN learns X <-> Y translation with no label (eqs. 2-8).

    Trained by the workbench loop like every method: its batches are the training
    patients' non-blank slices (``training_data = "images"``), its two optimisers step the
    generator DSG on eq. 7 and then the discriminators (:meth:`optimizer_groups`), and it
    is neither validated nor tested (``segments = False``): it does not segment. Its run
    folder starts the U-Nets of a ``workbench train --init RUN`` run.
    """

    name = "multi-condos"
    training_data = "images"
    segments = False
    options_class = MultiConDoSOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        if len(self.modalities) != 2:
            raise ConfigError(f"multi-condos pre-trains on exactly 2 modalities, got {list(modalities)}")
        check_options(self.opts)
        if config.size is not None and config.size < 32:
            raise ConfigError(
                f"size={config.size}: the DSGAN's PatchGAN discriminators need slices of 32 pixels or more"
            )
        o = self.opts
        self.dsgan = DSGAN(self.modalities, config.base_channels, o.shared_layers, o.share, o.disc_channels or None)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Eq. 8, one optimiser each, stepped in this order: the generator DSG on eq. 7, then
        Dis_X and Dis_Y on their loss."""
        return {
            "generator": list(self.dsgan.generator.parameters()),
            "discriminator": list(self.dsgan.dis.parameters()),
        }

    def adam_betas(self) -> tuple[float, float]:
        return (float(self.opts.betas[0]), float(self.opts.betas[1]))

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        """Losses for a batch ``x_l`` ``(B, 2, H, W)`` of paired slices (no label).

        Returns:
            ``generator``: eq. 7 for DSG; ``discriminator``: the discriminators' loss (no
            graph when ``gan`` = 0); and the detached parts ``gan``, ``translation``,
            ``reconstruction``, ``contrastive``, ``d_real``, ``d_fake`` (mean Dis
            probabilities) for the log.
        """
        images = batch.x_l
        a, b = self.modalities
        o = self.opts
        gen, dis = self.dsgan.generator, self.dsgan.dis
        x, y = images[:, 0:1], images[:, 1:2]
        y_fake, f_x = gen(x, a)  # y' = G_a(x); F_x from E_a + SL
        x_fake, f_y = gen(y, b)  # x' = G_b(y); F_y from E_b + SL
        x_rec, f_yp = gen(y_fake, b)  # x'' = G_b(G_a(x)); F_y' from E_b + SL
        y_rec, f_xp = gen(x_fake, a)  # y'' = G_a(G_b(y)); F_x' from E_a + SL
        zero = images.new_zeros(())
        if o.gan > 0:
            with _frozen(dis):
                l_gan = gan_generator_loss(dis[b](y_fake), dis[a](x_fake))  # eq. 4, G's side
        else:
            l_gan = zero
        l_t = translation_loss(y_fake, y, x_fake, x)  # eq. 5
        l_r = reconstruction_loss(x_rec, x, y_rec, y)  # eq. 6
        l_c = multimodal_contrastive_loss(f_x, f_y, f_xp, f_yp, o.temperature)  # eqs. 2-3
        loss_g = o.gan * l_gan + o.gamma * l_t + o.beta * l_r + o.lam * l_c  # eq. 7
        if o.gan > 0:  # eq. 8's max over Dis_X, Dis_Y, on the detached translations
            real_y, fake_y = dis[b](y), dis[b](y_fake.detach())
            real_x, fake_x = dis[a](x), dis[a](x_fake.detach())
            loss_d = gan_discriminator_loss(real_y, fake_y, real_x, fake_x)
            d_real = 0.5 * (torch.sigmoid(real_y).mean() + torch.sigmoid(real_x).mean())
            d_fake = 0.5 * (torch.sigmoid(fake_y).mean() + torch.sigmoid(fake_x).mean())
        else:
            loss_d, d_real, d_fake = zero, zero, zero
        return {
            "generator": loss_g,
            "discriminator": loss_d,
            "gan": l_gan.detach(),
            "translation": l_t.detach(),
            "reconstruction": l_r.detach(),
            "contrastive": l_c.detach(),
            "d_real": d_real.detach(),
            "d_fake": d_fake.detach(),
        }

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        raise ConfigError(
            "multi-condos is a pre-training: it translates, it does not segment; fine-tune its run "
            "with `workbench train --method supervised --init RUN`"
        )

    @torch.no_grad()
    def translate(self, images: Tensor) -> dict[str, Tensor]:
        """A -> B -> A and B -> A -> B for ``(B, 2, H, W)`` slices, in eval mode.

        Returns:
            ``{X, Y, X_to_Y, X_to_Y_to_X, Y_to_X, Y_to_X_to_Y}`` (modality names for X, Y),
            each ``(B, H, W)``.
        """
        was_training = self.training
        self.eval()
        try:
            a, b = self.modalities
            gen = self.dsgan.generator
            x, y = images[:, 0:1], images[:, 1:2]
            y_fake, x_fake = gen(x, a)[0], gen(y, b)[0]
            out = {
                a: x,
                b: y,
                f"{a}_to_{b}": y_fake,
                f"{a}_to_{b}_to_{a}": gen(y_fake, b)[0],
                f"{b}_to_{a}": x_fake,
                f"{b}_to_{a}_to_{b}": gen(x_fake, a)[0],
            }
        finally:
            self.train(was_training)
        return {k: v[:, 0] for k, v in out.items()}

    def epoch_samples(self, epoch: int, images: Tensor) -> dict[str, np.ndarray]:
        """The translations of ``samples`` fixed slices (saved as RUN/samples/epoch_NNNN.npz):
        evenly spaced among the slices with at least the median non-zero area (so not the
        near-empty ends of a volume), chosen from the images alone."""
        count = min(self.opts.samples, images.shape[0])
        if count == 0:
            return {}
        area = (images.abs() > 1e-6).flatten(1).float().mean(dim=1)
        candidates = torch.nonzero(area >= area.median()).flatten()
        index = candidates[torch.linspace(0, len(candidates) - 1, count, device=candidates.device).round().long()]
        return {k: v.float().cpu().numpy() for k, v in self.translate(images[index]).items()}


def read_samples(run_dir: str | Path) -> dict[int, dict[str, np.ndarray]]:
    """The saved translations of a pre-training: epoch -> ``{name: (S, H, W) array}``."""
    out = {}
    for path in sorted(Path(run_dir, "samples").glob("epoch_*.npz")):
        with np.load(path) as f:
            out[int(path.stem.split("_")[1])] = {k: f[k] for k in f.files}
    return out


# ----------------------------------------------------------------------------- transfer
@dataclass
class Pretraining:
    """A finished Multi-ConDoS pre-training, read for ``--init``."""

    path: Path
    record: dict  # its config.json
    state: dict[str, Tensor]  # MultiConDoS state dict

    @property
    def modalities(self) -> list[str]:
        return list(self.record["modalities"])

    def generator_state(self, modality: str) -> dict[str, Tensor]:
        """The branch that reads ``modality`` (G_a for X, G_b for Y), with U-Net keys."""
        prefix = f"{GENERATOR_PREFIX}{modality}."
        return {k[len(prefix) :]: v for k, v in self.state.items() if k.startswith(prefix)}

    def apply(self, method: nn.Module, held_out: list[str]) -> dict[str, Any]:
        """Copy the pre-trained rows into ``method.nets[m]`` for each of its modalities.

        Raises:
            ConfigError: the method has no per-modality U-Nets (or other networks too), a
                modality or the width differs, or the pre-training saw a test patient.

        Returns:
            What was transferred, for the run's config.json and event log.
        """
        name = getattr(method, "name", type(method).__name__)
        nets = getattr(method, "nets", None)
        modalities = list(getattr(method, "modalities", []))
        if not (
            isinstance(nets, nn.ModuleDict)
            and modalities
            and all(m in nets and isinstance(nets[m], UNet) for m in modalities)
        ):
            raise ConfigError(
                f"--init: method {name!r} has no per-modality U-Nets to start from a pre-training "
                "(use --method supervised)"
            )
        own = {id(nets[m]) for m in modalities}
        if any(isinstance(mod, UNet) and id(mod) not in own for mod in method.modules()):
            raise ConfigError(
                f"--init: method {name!r} has other networks besides its per-modality U-Nets "
                "(teachers, peers) that a pre-training would not start; use --method supervised"
            )
        missing = [m for m in modalities if m not in self.modalities]
        if missing:
            raise ConfigError(f"--init {self.path}: pre-trained on {self.modalities}, this run needs {missing[0]!r}")
        width = self.record["config"]["base_channels"]
        if nets[modalities[0]].widths[0] != width:
            raise ConfigError(
                f"--init {self.path}: pre-trained with base_channels={width}, this run has "
                f"{nets[modalities[0]].widths[0]} (use --base-channels {width})"
            )
        leaked = sorted(set(self.record["train_cases"]) & set(held_out))
        if leaked:
            raise ConfigError(
                f"--init {self.path}: the pre-training trained on validation or test patient(s) "
                f"{leaked[:3]} of this run; use the same data, split_seed, test_fraction and "
                "val_fraction"
            )
        opts = self.record["options"]
        rows = transfer_rows(opts["shared_layers"], opts["decoder_layers"])
        copied: dict[str, int] = {}
        for m in modalities:
            copied[m] = len(
                transfer_to_unet(self.generator_state(m), nets[m], opts["shared_layers"], opts["decoder_layers"])
            )
        return {
            "run": str(self.path.resolve()),
            "pretrain_epochs": self.record.get("epochs_done"),
            "rows": list(rows),
            "tensors": copied,
            "modalities": modalities,
        }


def transfer_to_unet(
    generator_state: dict[str, Tensor], unet: UNet, shared_layers: int = 1, decoder_layers: int = 3
) -> list[str]:
    """Section IV-D: copy E_a, SL and D_a's first ``decoder_layers`` rows into ``unet``.

    Args:
        generator_state: one DSG branch's state dict (U-Net keys; :meth:`Pretraining.generator_state`).
        unet: the segmentation U-Net, changed in place; the other tensors (the output layer,
            and D_a's rows beyond ``decoder_layers``) keep their values.
        shared_layers, decoder_layers: see :func:`workbench.nets.dsgan.transfer_rows`.

    Returns:
        The copied state-dict keys.
    """
    target = unet.state_dict()
    keys = transfer_keys(list(target), shared_layers, decoder_layers)
    absent = [k for k in keys if k not in generator_state]
    if absent:
        raise ConfigError(f"pre-trained generator has no tensor {absent[0]!r}")
    for k in keys:
        if generator_state[k].shape != target[k].shape:
            raise ConfigError(
                f"pre-trained {k} has shape {tuple(generator_state[k].shape)}, the U-Net "
                f"{tuple(target[k].shape)} (different base_channels?)"
            )
        target[k] = generator_state[k]
    unet.load_state_dict(target)
    return keys


def read_pretraining(run_dir: str | Path) -> Pretraining:
    """Check that ``run_dir`` is a finished Multi-ConDoS pre-training and read it: a run of
    the method ``multi-condos``, or one made by the earlier pre-training loop (``kind``
    :data:`KIND`), whose config.json and checkpoint are laid out differently.

    Raises:
        ConfigError: no such folder, not a run folder, a run of another kind, unfinished.
        DataError: unreadable config.json or checkpoint.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"--init {path}: no such run folder")
    config_path = path / "config.json"
    if not config_path.exists():
        raise ConfigError(f"--init {path}: not a run folder (no config.json)")
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{config_path}: unreadable ({type(exc).__name__})") from exc
    method = record.get("config", {}).get("method", "unknown") if isinstance(record, dict) else "unknown"
    earlier = isinstance(record, dict) and record.get("kind") == KIND
    if not earlier and method != MultiConDoS.name:
        raise ConfigError(
            f"--init {path}: a {method!r} training run, not a multi-condos pre-training (made by `workbench pretrain`)"
        )
    if not (path / "checkpoint.pt").exists():
        raise DataError(f"--init {path}: no checkpoint.pt (not a started pre-training)")
    state = load_checkpoint(path / "checkpoint.pt")
    epochs = record["config"]["epochs"]
    if state.get("epoch", 0) < epochs:
        raise ConfigError(
            f"--init {path}: the pre-training stopped at epoch {state.get('epoch', 0)} of {epochs}; "
            f"finish it with `workbench pretrain --resume {path}`"
        )
    if not earlier:  # the loop's run folder, in the layout Pretraining reads
        split = record["split"]
        options = parse_options(MultiConDoSOptions, dict(record["config"].get("options", {})), MultiConDoS.name)
        record = {
            **record,
            "train_cases": sorted(split["labeled"] + split["unlabeled"]),
            "options": dataclasses.asdict(options),
        }
    record = {**record, "epochs_done": state["epoch"]}
    return Pretraining(path, record, state["model"] if earlier else state["method"])
