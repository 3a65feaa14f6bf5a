import pytest
import torch

from workbench.errors import ConfigError
from workbench.nets.dsgan import (
    DSGAN,
    TABLE_I_ROWS,
    DomainSharingGenerator,
    PatchDiscriminator,
    rows_prefixes,
    shared_rows,
    transfer_keys,
    transfer_rows,
)
from workbench.nets.unet import UNet

DOMAINS = ("t1", "flair")


def _named_params(net: torch.nn.Module, prefixes: tuple[str, ...]) -> dict[str, torch.nn.Parameter]:
    return {k: p for k, p in net.named_parameters() if k.startswith(prefixes)}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shared_rows_are_the_same_parameters_in_both_directions(k):
    gen = DomainSharingGenerator(DOMAINS, base_channels=4, shared_layers=k)
    g_a, g_b = gen.branches["t1"], gen.branches["flair"]
    shared = rows_prefixes(shared_rows(k))
    a, b = _named_params(g_a, shared), _named_params(g_b, shared)
    assert a and a.keys() == b.keys()
    assert all(a[key] is b[key] for key in a)  # the same Parameter objects (Table I, "share")
    # BatchNorm buffers are shared too
    bufs_a = {n: t for n, t in g_a.named_buffers() if n.startswith(shared)}
    bufs_b = {n: t for n, t in g_b.named_buffers() if n.startswith(shared)}
    assert all(bufs_a[n] is bufs_b[n] for n in bufs_a)
    # every other row is domain-specific
    own_a = {k2: p for k2, p in g_a.named_parameters() if not k2.startswith(shared)}
    own_b = dict(g_b.named_parameters())
    assert own_a and all(own_a[key] is not own_b[key] for key in own_a)
    # the generator counts each shared weight once
    per_branch = sum(p.numel() for p in g_a.parameters())
    assert sum(p.numel() for p in gen.parameters()) == 2 * per_branch - sum(p.numel() for p in a.values())


def test_table_i_sharing_strategies():
    assert shared_rows(1) == ("down4", "up1")
    assert shared_rows(2) == ("down3", "down4", "up1", "up2")
    assert shared_rows(3) == ("down2", "down3", "down4", "up1", "up2", "up3")
    # each ConvTranspose2d goes with the row before it, as Table I lists them
    assert TABLE_I_ROWS["down4"] == ("encoder.levels.4.", "decoder.ups.0.")
    assert TABLE_I_ROWS["up3"] == ("decoder.blocks.2.", "decoder.ups.3.")
    with pytest.raises(ConfigError, match="shared_layers=4"):
        shared_rows(4)


def test_unshared_ablation_has_no_common_parameters():
    gen = DomainSharingGenerator(DOMAINS, base_channels=4, shared_layers=1, share=False)
    ids_a = {id(p) for p in gen.branches["t1"].parameters()}
    assert not ids_a & {id(p) for p in gen.branches["flair"].parameters()}


def test_a_step_on_one_direction_moves_the_shared_layers_of_the_other():
    torch.manual_seed(0)
    gen = DomainSharingGenerator(DOMAINS, base_channels=4, shared_layers=1)
    g_b = gen.branches["flair"]
    before = {k: v.clone() for k, v in g_b.state_dict().items()}
    opt = torch.optim.SGD(gen.parameters(), lr=0.1)
    out, _ = gen(torch.randn(2, 1, 32, 32), "t1")  # G_a only
    out.square().mean().backward()
    opt.step()
    after = g_b.state_dict()
    shared = rows_prefixes(shared_rows(1))
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith(shared) for k in changed)
    assert any(k.startswith("encoder.levels.4.") and k.endswith("weight") for k in changed)


def test_a_branch_is_exactly_the_unet():
    torch.manual_seed(0)
    gen = DomainSharingGenerator(DOMAINS, base_channels=4, shared_layers=2).eval()
    x = torch.randn(2, 1, 32, 32)
    out, feature = gen(x, "flair")
    assert torch.equal(out, gen.branches["flair"](x))  # same modules, same function as UNet.forward
    assert feature.shape == (2, 16, 8, 8)  # SL_2: output of upsampling 2, (4f, h/4, w/4)
    assert set(gen.branches["flair"].state_dict()) == set(UNet(1, 1, 4).state_dict())
    assert gen.other("t1") == "flair" and gen.other("flair") == "t1"


@pytest.mark.parametrize("k, shape", [(1, (8 * 4, 4, 4)), (3, (2 * 4, 16, 16))])
def test_sl_feature_is_the_last_shared_rows_output(k, shape):
    gen = DomainSharingGenerator(DOMAINS, base_channels=4, shared_layers=k)
    _, feature = gen(torch.randn(3, 1, 32, 32), "t1")
    assert feature.shape == (3, *shape)


def test_table_i_output_shapes():
    f, h = 4, 32
    net = DomainSharingGenerator(DOMAINS, base_channels=f).branches["t1"]
    seen = {}
    modules = {
        "input": net.encoder.levels[0],
        "down1": net.encoder.levels[1],
        "down2": net.encoder.levels[2],
        "down3": net.encoder.levels[3],
        "down4": net.encoder.levels[4],
        "up1": net.decoder.blocks[0],
        "up2": net.decoder.blocks[1],
        "up3": net.decoder.blocks[2],
        "up4": net.decoder.blocks[3],
        "output": net.decoder.head,
    }
    for name, module in modules.items():
        module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:])))
    net(torch.randn(1, 1, h, h))
    assert seen == {
        "input": (f, h, h),
        "down1": (2 * f, h // 2, h // 2),
        "down2": (4 * f, h // 4, h // 4),
        "down3": (8 * f, h // 8, h // 8),
        "down4": (16 * f, h // 16, h // 16),
        "up1": (8 * f, h // 8, h // 8),
        "up2": (4 * f, h // 4, h // 4),
        "up3": (2 * f, h // 2, h // 2),
        "up4": (f, h, h),
        "output": (1, h, h),
    }


def test_paper_sizes_are_one_parameter_away():
    net = DSGAN(DOMAINS, base_channels=32)
    assert net.generator.branches["t1"].widths == [32, 64, 128, 256, 512]
    assert net.dis["t1"].model[0].out_channels == 64  # Pix2Pix's ndf


def test_discriminator_patches_and_small_input_error():
    dis = PatchDiscriminator(1, 8)
    assert dis(torch.randn(2, 1, 32, 48)).shape == (2, 1, 2, 4)  # H/8 - 2, W/8 - 2
    with pytest.raises(ConfigError, match="at least 24"):
        dis(torch.randn(1, 1, 16, 16))


def test_transfer_rows_follow_section_iv_d_and_table_viii():
    everything_but_output = ("input", "down1", "down2", "down3", "down4", "up1", "up2", "up3", "up4")
    assert transfer_rows(1, 3) == everything_but_output  # E_a + SL + D_a's first three; output random
    assert transfer_rows(1, 0) == ("input", "down1", "down2", "down3", "down4", "up1")  # Encoder_SL
    assert transfer_rows(1, 1)[-1] == "up2"
    assert transfer_rows(2, 3) == everything_but_output  # D_a has only up3, up4 before its output
    assert transfer_rows(3, 0)[-1] == "up3"
    keys = list(UNet(1, 1, 4).state_dict())
    assert set(keys) - set(transfer_keys(keys, 1, 3)) == {"decoder.head.weight", "decoder.head.bias"}
    with pytest.raises(ConfigError, match="decoder_layers=4"):
        transfer_rows(1, 4)


def test_dsgan_needs_two_domains():
    with pytest.raises(ConfigError, match="two different domains"):
        DSGAN(("t1", "t1"), base_channels=4)
