import pytest
import torch

from workbench.errors import ConfigError
from workbench.nets import MengNet
from workbench.nets.meng import CrossModalityEnhancement, ModalityAwareEnhancement, StageFusion


def _net(**kwargs):
    torch.manual_seed(0)
    return MengNet(1, base_channels=kwargs.pop("base_channels", 4), **kwargs).eval()


def test_mae_weights_softmax_over_the_two_kernels():
    torch.manual_seed(0)
    mae = ModalityAwareEnhancement(6).eval()
    x = torch.randn(3, 6, 8, 8)
    w, branches = mae.weights(x)
    assert w.shape == (3, 2, 6)  # (B, kernels, C)
    assert torch.allclose(w.sum(dim=1), torch.ones(3, 6))
    assert (w > 0).all()
    assert [b.shape for b in branches] == [x.shape, x.shape]
    assert mae.psi[0].block[0].kernel_size == (3, 3) and mae.psi[1].block[0].kernel_size == (5, 5)


def test_mae_is_eq2_then_channel_weighted_sum():
    torch.manual_seed(0)
    mae = ModalityAwareEnhancement(4).eval()
    x = torch.randn(2, 4, 8, 8)
    u1, u2 = mae.psi[0](x), mae.psi[1](x)
    gap = (u1 + u2).mean(dim=(2, 3))
    logits = gap @ mae.fc.weight.T + mae.fc.bias  # F_fc, (B, 2C)
    expected = torch.zeros_like(x)
    for b in range(2):
        for c in range(4):
            l1, l2 = logits[b, c], logits[b, 4 + c]
            w1 = torch.exp(l1) / (torch.exp(l1) + torch.exp(l2))
            expected[b, c] = w1 * u1[b, c] + (1 - w1) * u2[b, c]
    assert torch.allclose(mae(x), expected, atol=1e-6)


def test_stage_fusion_is_eq3():
    torch.manual_seed(0)
    fusion = StageFusion(3)
    fa, fb = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    out = fusion(fa, fb)
    assert out.shape == fa.shape and (out > 0).all() and (out < 1).all()
    c1 = torch.nn.functional.conv2d(torch.cat([fa, fb], 1), fusion.conv1.weight, fusion.conv1.bias, padding=1)
    c2 = torch.nn.functional.conv2d(c1, fusion.conv2.weight, fusion.conv2.bias, padding=1)
    assert torch.allclose(out, torch.sigmoid(c2), atol=1e-6)


def test_every_stage_has_the_expected_shape():
    net = _net()
    enc = net.encode(torch.randn(2, 2, 32, 48))
    for s in range(4):
        shape = (2, 4 * 2**s, 32 // 2**s, 48 // 2**s)
        assert enc["fused"][s].shape == shape
        for i in range(2):
            assert enc["stages"][i][s].shape == shape and enc["skips"][i][s].shape == shape
    assert [b.shape for b in enc["bottleneck"]] == [(2, 64, 2, 3)] * 2
    assert len(net.fusions) == 4 and len(net.enhance[0]) == 4


def test_fusion_couples_the_branches_at_every_stage():
    net = _net()
    x = torch.randn(2, 2, 32, 32)
    y = x.clone()
    y[:, 1] = torch.randn(2, 32, 32)  # change modality b only
    ex, ey = net.encode(x), net.encode(y)
    for s in range(4):
        assert not torch.allclose(ex["fused"][s], ey["fused"][s]), s
        assert not torch.allclose(ex["stages"][0][s], ey["stages"][0][s]), s  # branch a sees b at stage s
    assert not torch.allclose(net(x)[0], net(y)[0])
    plain = _net(fusion=False)
    assert plain.fusions is None
    assert torch.equal(plain(x)[0], plain(y)[0])  # no fusion: branch a ignores modality b
    assert not torch.equal(plain(x)[1], plain(y)[1])


def test_without_enhancement_the_skips_are_the_fused_stages():
    net = _net(enhancement=False)
    enc = net.encode(torch.randn(1, 2, 32, 32))
    assert net.enhance is None
    assert all(a is b for a, b in zip(enc["skips"][0], enc["stages"][0]))


def test_forward_with_features_per_branch():
    net = _net()
    x = torch.randn(2, 2, 32, 32)
    logits, feats = net.forward_with_features(x)
    assert [z.shape for z in logits] == [(2, 1, 32, 32)] * 2
    assert feats[0]["bottleneck"].shape == (2, 64, 2, 2) and feats[1]["decoder"].shape == (2, 4, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(net(x), logits))  # eval mode: deterministic


def test_dropout_on_the_bottleneck_in_train_mode():
    net = _net().train()
    x = torch.randn(2, 2, 32, 32)
    assert not torch.equal(net(x)[0], net(x)[0])
    assert torch.equal(_net(dropout=0.0).train()(x)[0], _net(dropout=0.0).train()(x)[0])


def test_3d_network():
    net = _net(base_channels=2, spatial_dims=3)
    x = torch.randn(1, 2, 16, 16, 32)
    logits, feats = net.forward_with_features(x)
    assert [z.shape for z in logits] == [(1, 1, 16, 16, 32)] * 2
    assert feats[0]["bottleneck"].shape == (1, 32, 1, 1, 2)
    assert isinstance(net.fusions[0].conv1, torch.nn.Conv3d)


def test_default_width_parameter_count():
    assert MengNet().widths == [32, 64, 128, 256, 512]
    assert sum(p.numel() for p in MengNet().parameters()) == 24_148_610  # the docstring's number


def test_bad_inputs_are_clear():
    net = _net()
    with pytest.raises(ConfigError, match="divisible by 16"):
        net(torch.randn(1, 2, 20, 32))
    with pytest.raises(ConfigError, match=r"expects \(B, 2, H, W\)"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="spatial_dims=1"):
        MengNet(spatial_dims=1)


def test_cross_modality_mae_is_eq2_with_the_softmax_over_the_modalities():
    """W^a + W^b = 1 for every channel; branch m gets W^m * (psi_1^m + psi_2^m)(F^m), by hand."""
    torch.manual_seed(0)
    mae = CrossModalityEnhancement(4).eval()
    fa, fb = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    w, _ = mae.weights([fa, fb])
    assert w.shape == (2, 2, 4) and torch.allclose(w.sum(dim=1), torch.ones(2, 4)) and (w > 0).all()
    out = mae([fa, fb])
    for m, f in enumerate((fa, fb)):
        u = mae.psi[m][0](f) + mae.psi[m][1](f)
        logits = torch.stack(
            [
                mae.fc[k](uk.mean(dim=(2, 3)))
                for k, uk in enumerate([mae.psi[0][0](fa) + mae.psi[0][1](fa), mae.psi[1][0](fb) + mae.psi[1][1](fb)])
            ],
            dim=1,
        )
        weight = torch.exp(logits[:, m]) / torch.exp(logits).sum(dim=1)
        torch.testing.assert_close(out[m], weight[:, :, None, None] * u)
    # each branch's enhanced map depends on the other modality (through the softmax)
    fb2 = fb + 1.0
    assert not torch.equal(mae([fa, fb2])[0], out[0])


def test_meng_net_takes_either_reading_of_eq2():
    x = torch.randn(2, 2, 32, 32)
    net = _net(mae_softmax="modalities")
    assert net.enhance is None and len(net.enhance_across) == 4
    assert [y.shape for y in net(x)] == [(2, 1, 32, 32)] * 2
    with pytest.raises(ConfigError, match="unknown mae_softmax 'channels'"):
        _net(mae_softmax="channels")
