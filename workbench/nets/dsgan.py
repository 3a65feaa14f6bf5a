"""DSGAN: the domain-sharing GAN of Multi-ConDoS (Zhang et al., IEEE TMI 2024).

The generation module is ``DSG = {G_a(E_a, SL, D_a): X => Y, G_b(E_b, SL, D_b): Y => X}``
(section IV-A): two translation generators whose middle layers, the shared layers SL,
are one set of weights. Two discriminators Dis_X, Dis_Y tell real images of their domain
from translated ones.

Generator (Table I, "one branch of the DSG"). "This U-Net network also serves as the
backbone network of DSG" (section V, network architecture), so each branch *is* a
:class:`~workbench.nets.unet.UNet` with one input and one output channel, and Table I's
rows map onto the U-Net's modules like this (f = ``base_channels``)::

    Table I row         U-Net modules                              output of its convs
    input layer         encoder.levels.0                            (f,    h,    w)
    downsampling 1      encoder.levels.1                            (2f,   h/2,  w/2)
    downsampling 2      encoder.levels.2                            (4f,   h/4,  w/4)
    downsampling 3      encoder.levels.3                            (8f,   h/8,  w/8)
    downsampling 4      encoder.levels.4 + decoder.ups.0            (16f,  h/16, w/16)
    upsampling 1        decoder.blocks.0 + decoder.ups.1            (8f,   h/8,  w/8)
    upsampling 2        decoder.blocks.1 + decoder.ups.2            (4f,   h/4,  w/4)
    upsampling 3        decoder.blocks.2 + decoder.ups.3            (2f,   h/2,  w/2)
    upsampling 4        decoder.blocks.3                            (f,    h,    w)
    output layer        decoder.head                                (1,    h,    w)

Table I lists each row's max-pool after its two convs and each ConvTranspose2d at the end
of the row whose output it upsamples (downsampling 4, upsampling 1-3); the grouping above
follows that. Sharing strategies (Table I's columns), ``shared_layers = k``:

    SL_1u^1d (k=1): downsampling 4, upsampling 1
    SL_2u^2d (k=2): downsampling 3-4, upsampling 1-2
    SL_3u^3d (k=3): downsampling 2-4, upsampling 1-3

A shared row is the *same* module object in both generators (so the same Parameter and
BatchNorm buffers). The paper found k = 1 best (Fig. 6); it is the default. Because each
branch has exactly the U-Net's state-dict keys, the transfer to a segmentation U-Net is a
state-dict copy (:func:`transfer_keys`).

Discriminators: the paper does not describe them. Choice: the 70x70 PatchGAN of Pix2Pix /
CycleGAN (4x4 convs, stride 2, widths ``2f, 4f, 8f, 16f`` capped at 8x the first, then a
stride-1 conv to one logit per patch; LeakyReLU 0.2; BatchNorm except on the first and
last conv), unconditional as eq. 4 writes ``Dis_Y(y)`` and ``Dis_Y(G_a(x))``. With f = 32
the first width is 64, Pix2Pix's ``ndf``.

Other choices:
    * The generator convs use the U-Net's DoubleConv (LeakyReLU 0.01 where Table I says
      ReLU): the network that is pre-trained is then the network that is fine-tuned.
    * No dropout while pre-training (Table I lists none); Dropout2d has no weights, so
      the fine-tuned U-Net gets its own dropout and the state-dict keys still match.
    * The output layer is linear (no tanh): MR slices are z-scored, not in [-1, 1].
    * Weights keep PyTorch's default initialisation, as the U-Net trained from scratch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.nets.unet import UNet

__all__ = [
    "TABLE_I_ROWS",
    "DECODER_ROWS",
    "shared_rows",
    "rows_prefixes",
    "transfer_rows",
    "transfer_keys",
    "DomainSharingGenerator",
    "PatchDiscriminator",
    "DSGAN",
]

#: Table I's rows -> the U-Net state-dict prefixes they own (module docstring).
TABLE_I_ROWS: dict[str, tuple[str, ...]] = {
    "input": ("encoder.levels.0.",),
    "down1": ("encoder.levels.1.",),
    "down2": ("encoder.levels.2.",),
    "down3": ("encoder.levels.3.",),
    "down4": ("encoder.levels.4.", "decoder.ups.0."),
    "up1": ("decoder.blocks.0.", "decoder.ups.1."),
    "up2": ("decoder.blocks.1.", "decoder.ups.2."),
    "up3": ("decoder.blocks.2.", "decoder.ups.3."),
    "up4": ("decoder.blocks.3.",),
    "output": ("decoder.head.",),
}
ENCODER_ROWS = ("input", "down1", "down2", "down3", "down4")
DECODER_ROWS = ("up1", "up2", "up3", "up4", "output")


def shared_rows(shared_layers: int) -> tuple[str, ...]:
    """Table I's rows shared by SL_ku^kd, ``k = shared_layers`` in 1..3, encoder side first."""
    if shared_layers not in (1, 2, 3):
        raise ConfigError(f"shared_layers={shared_layers}: Table I has SL_1, SL_2, SL_3; choose 1, 2 or 3")
    return ENCODER_ROWS[5 - shared_layers :] + DECODER_ROWS[:shared_layers]


def rows_prefixes(rows: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The U-Net state-dict prefixes of some of Table I's rows."""
    return tuple(p for row in rows for p in TABLE_I_ROWS[row])


def transfer_rows(shared_layers: int, decoder_layers: int = 3) -> tuple[str, ...]:
    """Rows of G_a that section IV-D transfers into the segmentation U-Net of domain X.

    "We transfer the weights of E_a, SL, and the first three layers of D_a ... the
    resulting new decoder (with the first three layers pre-trained and the last layer
    random initialized)". E_a and D_a are the branch's rows before and after SL; D_a's
    "last layer" is the output layer, which is never transferred. ``decoder_layers`` is
    how many of D_a's first rows go along (Table VIII: Encoder_SL = 0 ... Encoder_SL_D3 = 3),
    capped at the rows D_a has before its output layer.
    """
    if not 0 <= decoder_layers <= 3:
        raise ConfigError(f"transfer decoder_layers={decoder_layers}: Table VIII has 0 to 3")
    shared_rows(shared_layers)  # checks k
    up_shared = DECODER_ROWS[:shared_layers]
    d_a = DECODER_ROWS[shared_layers:4]  # D_a's rows before its output layer
    return ENCODER_ROWS + up_shared + d_a[:decoder_layers]  # E_a and SL's encoder rows = all 5


def transfer_keys(unet_keys: list[str] | tuple[str, ...], shared_layers: int, decoder_layers: int = 3) -> list[str]:
    """The U-Net state-dict keys (of ``unet_keys``) that :func:`transfer_rows` covers."""
    prefixes = rows_prefixes(transfer_rows(shared_layers, decoder_layers))
    return [k for k in unet_keys if k.startswith(prefixes)]


def _module_at(net: nn.Module, prefix: str) -> tuple[nn.ModuleList, int]:
    """(ModuleList, index) of a row prefix such as ``encoder.levels.4.``."""
    path, index = prefix.rstrip(".").rsplit(".", 1)
    parent = net.get_submodule(path)
    assert isinstance(parent, nn.ModuleList), prefix
    return parent, int(index)


class DomainSharingGenerator(nn.Module):
    """DSG: one U-Net branch per input domain, Table I's SL rows shared between them.

    ``branches[a]`` is G_a (reads domain ``a``, writes the other domain), ``branches[b]``
    is G_b. With ``share=False`` the SL rows are two separate copies (the "Multi-Con"
    ablation of Table III); features for the contrastive loss come from the same place.

    Args:
        domains: the two domain (modality) names ``(X, Y)``.
        base_channels: f of Table I (paper: 32).
        shared_layers: k of SL_ku^kd (1, 2 or 3; paper's best: 1).
        share: whether the SL rows are shared.
    """

    def __init__(
        self, domains: tuple[str, str] | list[str], base_channels: int = 32, shared_layers: int = 1, share: bool = True
    ) -> None:
        super().__init__()
        if len(domains) != 2 or domains[0] == domains[1]:
            raise ConfigError(f"DSGAN needs two different domains, got {list(domains)}")
        self.domains = (str(domains[0]), str(domains[1]))
        self.shared_layers = shared_layers
        self.share = share
        self.shared = shared_rows(shared_layers)
        self.branches = nn.ModuleDict({d: UNet(1, 1, base_channels, dropout=(0.0,) * 5) for d in self.domains})
        if share:
            g_a, g_b = (self.branches[d] for d in self.domains)
            for prefix in rows_prefixes(self.shared):
                src, i = _module_at(g_a, prefix)
                dst, j = _module_at(g_b, prefix)
                dst[j] = src[i]  # the same module object: SL is one set of weights (section IV-A)

    def other(self, domain: str) -> str:
        """The domain a branch translates ``domain`` into."""
        return self.domains[1] if domain == self.domains[0] else self.domains[0]

    def forward(self, images: Tensor, domain: str) -> tuple[Tensor, Tensor]:
        """Translate ``(B, 1, H, W)`` images of ``domain`` into the other domain.

        Returns:
            The translated images ``(B, 1, H, W)`` and the SL feature map F: the output of
            the last shared row's convs (upsampling k of Table I), ``(B, 2^(4-k) f,
            H / 2^(4-k), W / 2^(4-k))``; eqs. 2-3 flatten it.
        """
        net: UNet = self.branches[domain]
        features = net.encoder(images)
        x = features[-1]
        sl_feature = x
        decoder = net.decoder
        for i, (up, block, skip) in enumerate(zip(decoder.ups, decoder.blocks, reversed(features[:-1]))):
            x = block(torch.cat([up(x), skip], dim=1))  # as UNetDecoder.forward
            if i == self.shared_layers - 1:
                sl_feature = x
        return decoder.head(x), sl_feature


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(B, 1, H, W)`` images -> ``(B, 1, H/8 - 2, W/8 - 2)`` real/fake logits.

    Args:
        in_channels: image channels.
        channels: width of the first conv (Pix2Pix: 64).
        n_layers: stride-2 convs (3: 70x70 receptive field).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        self.n_layers = n_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = channels
        for i in range(1, n_layers + 1):
            nxt = channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(width, nxt, 4, stride, 1, bias=False),
                nn.BatchNorm2d(nxt),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        smallest = 2**self.n_layers * 3
        if min(h, w) < smallest:
            raise ConfigError(
                f"DSGAN discriminator input {h}x{w}: slices must be at least {smallest} pixels (use --size 32 or more)"
            )
        return self.model(images)


class DSGAN(nn.Module):
    """The domain-sharing generator and the discriminators ``dis[X]`` (Dis_X), ``dis[Y]`` (Dis_Y).

    ``dis[d]`` judges images of domain ``d``: real ones, and the translations of the
    other domain's images into ``d``.
    """

    def __init__(
        self,
        domains: tuple[str, str] | list[str],
        base_channels: int = 32,
        shared_layers: int = 1,
        share: bool = True,
        disc_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.generator = DomainSharingGenerator(domains, base_channels, shared_layers, share)
        self.domains = self.generator.domains
        width = 2 * base_channels if disc_channels is None else disc_channels
        self.dis = nn.ModuleDict({d: PatchDiscriminator(1, width) for d in self.domains})
