"""The CMC network: modality-specific encoders, the MIA module with its fusion layer, two decoders.

Zhou, Sun, Deng, Chu, Dou, "Robust Semi-supervised Multimodal Medical Image Segmentation
via Cross Modality Collaboration", arXiv:2408.07341 (2024), section 2.1 and Fig. 1 (the figure
is not in our text copy). The losses that train it are in :mod:`workbench.methods.cmc`.

What the paper says:
    * Each modality goes through its own encoder: ``F_ds^a = E^a(x^a)``, ``F_ds^b = E^b(x^b)``,
      the "distinctive semantic" (DS) features (section 2.1). In the paper E^a and E^b are
      SAM-Med3D ViT encoders with an adapter (two 3D convs of different kernel sizes) in
      every block, fine-tuned from pre-trained weights.
    * The Modality-Independent Awareness (MIA) module "integrates modality-aware attention
      mechanisms [15], 3D convolutional layers, and a fusion layer"; the features
      ``F_mia^a``, ``F_mia^b`` it makes are "merged in a fusion layer to produce the fused
      feature". [15] is Zhang et al.'s modality-aware mutual learning (MICCAI 2021), where
      modality-specific models exchange information through attention weights.
    * Two decoders D^a, D^b give one prediction per modality (eq. 2: ``D^a(E^a(x^a))``).

Choices (the paper gives no widths, kernels, normalisation or wiring of the fused feature):
    * Encoders: the workbench CNN encoder instead of SAM-Med3D's ViT (whose weights cannot
      be downloaded here, and whose adapters only make sense on top of them): 5 levels of
      (conv3 - BN - LeakyReLU(0.01)) x 2 with widths ``base * (1, 2, 4, 8, 16)`` and 2x
      max-pools (the blocks of :mod:`workbench.nets.meng`, so ``spatial_dims=3`` gives a 3D
      net). ``F_ds^m`` is the bottleneck, ``(B, 16*base, *spatial/16)``: the encoder's output,
      as the ViT's image embedding is. No dropout (the paper mentions none).
    * MIA at the bottleneck, reading [15]'s modality-aware attention as per-position weights
      over the modalities:
        ``U^m = conv3-BN-LeakyReLU(F_ds^m)``                    (one conv layer per modality)
        ``A = softmax_m(conv1x1(cat(U^a, U^b)))``, ``(B, 2, *spatial)``, summing to 1 over m
        ``F_mia^m = A_m * U^m``
        ``F_fused = conv1x1-BN-LeakyReLU(cat(F_mia^a, F_mia^b))``   (the fusion layer, 2C -> C)
    * Decoder m sees ``F_ds^m + F_fused`` (a residual addition, so each decoder keeps its
      modality's own path) and the skip connections of its own encoder E^m (the paper's
      decoders come from the CLIP-driven Universal Model [6], a U-shaped decoder with
      skips): 4 transposed convs (kernel 2, stride 2), each followed by a double conv on
      [upsampled, skip], and a 1x1 head. Without MIA (``mia=False``) decoder m sees
      ``F_ds^m``: two independent U-Nets.
    * ``fusion_levels="all"`` adds one MIA module (same layout, that level's width) at each
      of the four skip levels too: decoder m then gets ``skip_l^m + F_fused,l`` at every
      level, so a modality's decoder also sees the other modality at full resolution.
      The default ``bottleneck`` follows the paper, whose fused feature comes out of the
      encoders' final embedding (F_ds); on the built-in HECKTOR data the weak modality's
      decoder is then blind to the other except through a 4x4 map (docs/results.md).
    * ``specific_encoders=False`` (the "baseline" row of Table 2) uses one encoder for
      both modalities; ``self.encoders`` then has one entry.

Inputs need both modalities (channel i feeds encoder i); through the MIA module each
decoder's output depends on both.

Parameter count (2D, ``base_channels=32``, MIA on): 20,772,932 = two encoders and two
decoders (15,524,930, as two workbench U-Nets of 7,762,465) + the MIA module 5,248,002
(mostly its two 3x3 convs at 512 channels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.nets.meng import BranchDecoder, ConvBlock, layers_for

__all__ = ["CMCNet", "CMCOutput", "CMCEncoder", "MIAModule", "FUSION_LEVELS"]

#: where the MIA module fuses the modalities: the bottleneck only (the paper) or every level
FUSION_LEVELS = ("bottleneck", "all")

_N_LEVELS = 5  # 4 max-pools


class CMCEncoder(nn.Module):
    """E^m: 5 double-conv levels with 2x max-pools; returns every level, the last is F_ds."""

    def __init__(self, in_channels: int, base_channels: int, spatial_dims: int = 2) -> None:
        super().__init__()
        self.widths = [base_channels * 2**i for i in range(_N_LEVELS)]
        self.levels = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else self.widths[i - 1], w, spatial_dims) for i, w in enumerate(self.widths)
        )
        self.pool = layers_for(spatial_dims).pool(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class MIAModule(nn.Module):
    """Modality-Independent Awareness: per-modality conv, modality-aware attention, fusion layer.

    ``U^m = conv3-BN-LReLU(F_ds^m)``; ``A = softmax_m(conv1x1(cat(U^a, U^b)))``;
    ``F_mia^m = A_m * U^m``; ``F_fused = conv1x1-BN-LReLU(cat(F_mia^a, F_mia^b))``.

    Shapes: ``f_a``, ``f_b`` ``(B, C, *spatial)``; ``F_mia^m`` and ``F_fused`` the same;
    ``A`` ``(B, 2, *spatial)``.
    """

    n_modalities = 2

    def __init__(self, channels: int, spatial_dims: int = 2) -> None:
        super().__init__()
        nd = layers_for(spatial_dims)
        self.convs = nn.ModuleList(
            ConvBlock(channels, channels, spatial_dims, 3, repeats=1) for _ in range(self.n_modalities)
        )
        self.attention = nd.conv(self.n_modalities * channels, self.n_modalities, kernel_size=1)
        self.fusion = ConvBlock(self.n_modalities * channels, channels, spatial_dims, 1, repeats=1)

    def forward(self, f_a: Tensor, f_b: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """``[F_mia^a, F_mia^b]``, ``F_fused`` and the attention ``A``."""
        u = [conv(f) for conv, f in zip(self.convs, (f_a, f_b))]
        attention = torch.softmax(self.attention(torch.cat(u, dim=1)), dim=1)  # modality-aware attention
        mia = [attention[:, i : i + 1] * u[i] for i in range(self.n_modalities)]
        return mia, self.fusion(torch.cat(mia, dim=1)), attention


class CMCOutput(NamedTuple):
    """Everything one forward pass makes, per modality where it is a list (index = channel)."""

    logits: list[Tensor]  # D^m(...), (B, out_channels, *spatial)
    ds: list[Tensor]  # F_ds^m = E^m(x^m), (B, 16*base, *spatial/16)
    mia: list[Tensor] | None  # F_mia^m (None without MIA)
    fused: Tensor | None  # F_fused
    attention: Tensor | None  # A, (B, 2, *spatial/16)
    decoder: list[Tensor]  # last decoder feature map before the head, (B, base, *spatial)


class CMCNet(nn.Module):
    """Two modality-specific encoders, the MIA module at the bottleneck, two decoders.

    Args:
        out_channels: logit channels per modality (1: binary task, sigmoid outside).
        base_channels: width of level 1; level l has ``base_channels * 2**(l-1)``.
        spatial_dims: 2 (slices, the workbench default) or 3 (the paper's volumes).
        specific_encoders: one encoder per modality (True) or one shared (Table 2 baseline).
        mia: the MIA module and its fusion layer; False: each decoder sees only its encoder.
        fusion_levels: MIA at the ``bottleneck`` only (default) or at ``all`` five levels.

    Shapes:
        input ``(B, 2, *spatial)`` (channel i = modality i), every spatial size divisible
        by 16; :meth:`forward` returns two logit maps ``(B, out_channels, *spatial)``.
    """

    n_modalities = 2

    def __init__(
        self,
        out_channels: int = 1,
        base_channels: int = 32,
        *,
        spatial_dims: int = 2,
        specific_encoders: bool = True,
        mia: bool = True,
        fusion_levels: str = "bottleneck",
    ) -> None:
        super().__init__()
        layers_for(spatial_dims)  # ConfigError for anything but 2 or 3
        if fusion_levels not in FUSION_LEVELS:
            raise ConfigError(f"unknown fusion_levels {fusion_levels!r}; choose one of: {', '.join(FUSION_LEVELS)}")
        self.spatial_dims = spatial_dims
        n_encoders = self.n_modalities if specific_encoders else 1
        self.encoders = nn.ModuleList(CMCEncoder(1, base_channels, spatial_dims) for _ in range(n_encoders))
        self.widths = self.encoders[0].widths
        self.mia = MIAModule(self.widths[-1], spatial_dims) if mia else None
        self.skip_mia = (  # one per skip level, finest first (fusion_levels="all")
            nn.ModuleList(MIAModule(w, spatial_dims) for w in self.widths[:-1])
            if mia and fusion_levels == "all"
            else None
        )
        self.decoders = nn.ModuleList(
            BranchDecoder(self.widths, out_channels, spatial_dims)  # D^a, D^b
            for _ in range(self.n_modalities)
        )

    def encoder(self, i: int) -> CMCEncoder:
        """E^m for modality channel ``i`` (the shared encoder when there is only one)."""
        return self.encoders[i % len(self.encoders)]

    def _check(self, x: Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.n_modalities:
            raise ConfigError(
                f"CMCNet expects (B, 2, {'H, W' if self.spatial_dims == 2 else 'D, H, W'}), got {tuple(x.shape)}"
            )
        if any(size % 16 for size in x.shape[2:]):
            raise ConfigError(
                f"CMCNet input size {'x'.join(map(str, x.shape[2:]))} must be divisible by 16 (4 max-pools)"
            )

    def forward_with_features(self, x: Tensor) -> CMCOutput:
        """Logits of both decoders and the intermediate features (see :class:`CMCOutput`)."""
        self._check(x)
        levels = [self.encoder(i)(x[:, i : i + 1]) for i in range(self.n_modalities)]
        ds = [f[-1] for f in levels]  # F_ds^a = E^a(x^a), F_ds^b = E^b(x^b)
        mia = fused = attention = None
        bottlenecks = ds
        if self.mia is not None:
            mia, fused, attention = self.mia(ds[0], ds[1])  # MIA module + fusion layer
            bottlenecks = [f + fused for f in ds]
        skips = [f[:-1] for f in levels]
        if self.skip_mia is not None:
            fused_skips = [mia(a, b)[1] for mia, a, b in zip(self.skip_mia, levels[0][:-1], levels[1][:-1])]
            skips = [[s + fs for s, fs in zip(skips[i], fused_skips)] for i in range(self.n_modalities)]
        logits, last = [], []
        for i in range(self.n_modalities):
            out, feat = self.decoders[i](skips[i], bottlenecks[i])
            logits.append(out)
            last.append(feat)
        return CMCOutput(logits, ds, mia, fused, attention, last)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[logits of modality 0, logits of modality 1]``, each ``(B, out_channels, *spatial)``."""
        return self.forward_with_features(x).logits

    def load_encoder_state(self, state: Mapping[str, object], source: str) -> None:
        """Load weights into the encoders from a state dict (e.g. pre-trained ones).

        Accepted keys: those of one encoder (``levels.0.block.0.weight``, ...: copied into
        every encoder, as the paper starts E^a and E^b from one pre-trained encoder), or
        those of ``self.encoders`` (``0.levels...``, ``1.levels...``). If some keys contain
        ``encoders.`` (e.g. a CMC method's whole state dict, ``net.encoders.0...``), only
        those are used, with everything up to ``encoders.`` removed.

        Raises:
            ConfigError: one line naming ``source`` and the first wrong key or shape.
        """
        if not all(isinstance(k, str) for k in state):
            raise ConfigError(f"encoder_weights {source}: not a state dict (its keys are not all strings)")
        if any("encoders." in k for k in state):  # e.g. a whole CMC state dict: keep its encoders
            state = {k.split("encoders.", 1)[1]: v for k, v in state.items() if "encoders." in k}
        own = self.encoders.state_dict()
        one = self.encoders[0].state_dict()
        # keys "0.levels..." / "1.levels...": every encoder; otherwise one encoder's keys
        expected = own if any(k.split(".", 1)[0].isdigit() for k in state) else one
        if set(state) != set(expected):
            missing = sorted(set(expected) - set(state))
            unexpected = sorted(set(state) - set(expected))
            first = f"unexpected key {unexpected[0]!r}" if unexpected else f"missing key {missing[0]!r}"
            raise ConfigError(
                f"encoder_weights {source}: not a state dict of the CMC encoders ({first}; "
                f"{len(unexpected)} unexpected, {len(missing)} missing; expected keys like "
                f"'levels.0.block.0.weight' or '0.levels.0.block.0.weight')"
            )
        for key, value in state.items():
            if not isinstance(value, Tensor):
                raise ConfigError(f"encoder_weights {source}: {key} is a {type(value).__name__}, not a tensor")
            if value.shape != expected[key].shape:
                raise ConfigError(
                    f"encoder_weights {source}: {key} has shape {tuple(value.shape)} but the encoder "
                    f"needs {tuple(expected[key].shape)} (check base_channels and spatial_dims)"
                )
        if expected is one:  # one encoder's weights: into every encoder
            state = {f"{i}.{k}": v for i in range(len(self.encoders)) for k, v in state.items()}
        self.encoders.load_state_dict(state)
