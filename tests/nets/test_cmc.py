import pytest
import torch
import torch.nn.functional as F

from workbench.errors import ConfigError
from workbench.nets.cmc import CMCNet, MIAModule


def _net(**kwargs):
    torch.manual_seed(0)
    return CMCNet(1, base_channels=kwargs.pop("base_channels", 4), **kwargs).eval()


def test_every_output_has_the_expected_shape():
    out = _net().forward_with_features(torch.randn(2, 2, 32, 48))
    assert [z.shape for z in out.logits] == [(2, 1, 32, 48)] * 2
    assert [f.shape for f in out.ds] == [(2, 64, 2, 3)] * 2  # F_ds^m: the bottleneck
    assert [f.shape for f in out.mia] == [(2, 64, 2, 3)] * 2 and out.fused.shape == (2, 64, 2, 3)
    assert out.attention.shape == (2, 2, 2, 3)
    assert [f.shape for f in out.decoder] == [(2, 4, 32, 48)] * 2


def test_mia_attention_is_a_softmax_over_the_modalities_and_the_fusion_layer_follows():
    torch.manual_seed(0)
    mia = MIAModule(3).eval()
    fa, fb = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    (mia_a, mia_b), fused, attention = mia(fa, fb)
    assert torch.allclose(attention.sum(dim=1), torch.ones(2, 4, 4)) and (attention > 0).all()
    u_a, u_b = mia.convs[0](fa), mia.convs[1](fb)
    logits = F.conv2d(torch.cat([u_a, u_b], 1), mia.attention.weight, mia.attention.bias)
    expected_a = torch.zeros_like(u_a)
    for b in range(2):  # per position, softmax over the two modalities, literally
        for i in range(4):
            for j in range(4):
                la, lb = logits[b, 0, i, j], logits[b, 1, i, j]
                expected_a[b, :, i, j] = torch.exp(la) / (torch.exp(la) + torch.exp(lb)) * u_a[b, :, i, j]
    assert torch.allclose(mia_a, expected_a, atol=1e-6)
    assert torch.allclose(mia_a + mia_b, torch.zeros_like(u_a) + attention[:, :1] * u_a + attention[:, 1:] * u_b)
    assert torch.allclose(fused, mia.fusion(torch.cat([mia_a, mia_b], 1)))
    assert mia.fusion.block[0].kernel_size == (1, 1) and mia.fusion.block[0].in_channels == 6


def test_the_fused_feature_couples_the_modalities_only_with_mia():
    x = torch.randn(2, 2, 32, 32)
    y = x.clone()
    y[:, 1] = torch.randn(2, 32, 32)  # change modality b only
    net = _net().train()  # batch statistics: an untrained net in eval mode is nearly constant
    assert torch.equal(net.forward_with_features(x).ds[0], net.forward_with_features(y).ds[0])  # E^a sees x^a only
    assert not torch.allclose(net(x)[0], net(y)[0])  # D^a sees F_fused
    plain = _net(mia=False).train()
    assert plain.mia is None and plain.forward_with_features(x).fused is None
    assert torch.equal(plain(x)[0], plain(y)[0]) and not torch.equal(plain(x)[1], plain(y)[1])


def test_shared_encoder_for_the_baseline_row():
    net = _net(specific_encoders=False)
    assert len(net.encoders) == 1 and net.encoder(0) is net.encoder(1)
    x = torch.randn(1, 1, 32, 32).repeat(1, 2, 1, 1)  # the same image in both channels
    out = net.forward_with_features(x)
    assert torch.equal(out.ds[0], out.ds[1])
    assert len(_net().encoders) == 2 and _net().encoder(0) is not _net().encoder(1)


def test_3d_network():
    net = _net(base_channels=2, spatial_dims=3)
    out = net.forward_with_features(torch.randn(1, 2, 16, 16, 32))
    assert [z.shape for z in out.logits] == [(1, 1, 16, 16, 32)] * 2
    assert out.ds[0].shape == (1, 32, 1, 1, 2) and out.attention.shape == (1, 2, 1, 1, 2)
    assert isinstance(net.mia.attention, torch.nn.Conv3d)


def test_default_width_parameter_count():
    net = CMCNet()
    assert net.widths == [32, 64, 128, 256, 512]
    assert sum(p.numel() for p in net.parameters()) == 20_772_932  # the docstring's numbers
    assert sum(p.numel() for p in net.mia.parameters()) == 5_248_002


def test_bad_inputs_are_clear():
    net = _net()
    with pytest.raises(ConfigError, match="divisible by 16"):
        net(torch.randn(1, 2, 20, 32))
    with pytest.raises(ConfigError, match=r"expects \(B, 2, H, W\)"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="spatial_dims=1"):
        CMCNet(spatial_dims=1)


# ---------------------------------------------------------------- encoder weights
def test_one_encoders_weights_go_into_both_encoders():
    source = _net(base_channels=4)
    torch.manual_seed(5)
    for p in source.encoders[0].parameters():
        p.data.normal_()
    net = _net()
    net.load_encoder_state(source.encoders[0].state_dict(), "'x.pt'")
    for enc in net.encoders:
        for (k, v), w in zip(enc.state_dict().items(), source.encoders[0].state_dict().values()):
            assert torch.equal(v, w), k
    assert net.decoders[0].head.weight.abs().sum() > 0  # decoders untouched


def test_both_encoders_keys_with_or_without_a_prefix():
    source = _net()
    torch.manual_seed(6)
    for p in source.encoders.parameters():
        p.data.normal_()
    whole = {f"net.{k}": v for k, v in source.state_dict().items()}  # as in a CMC run's checkpoint["method"]
    assert any(".mia." in k for k in whole) and any(".decoders." in k for k in whole)
    for state in (source.encoders.state_dict(), whole):
        net = _net()
        net.load_encoder_state(state, "'x.pt'")
        for i in range(2):
            assert torch.equal(net.encoders[i].levels[0].block[0].weight, source.encoders[i].levels[0].block[0].weight)
        assert not torch.equal(net.encoders[0].levels[0].block[0].weight, net.encoders[1].levels[0].block[0].weight)


def test_bad_encoder_state_dicts_are_one_line_errors():
    net = _net()
    wider = _net(base_channels=8).encoders[0].state_dict()
    with pytest.raises(
        ConfigError,
        match=r"'w.pt': levels.0.block.0.weight has shape \(8, 1, 3, 3\) but the "
        r"encoder needs \(4, 1, 3, 3\)",
    ) as err:
        net.load_encoder_state(wider, "'w.pt'")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not a state dict of the CMC encoders") as err:
        net.load_encoder_state({"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3)}, "'sam.pt'")
    assert "\n" not in str(err.value) and "'sam.pt'" in str(err.value)
    partial = dict(list(net.encoders[0].state_dict().items())[:-1])
    with pytest.raises(ConfigError, match="missing key"):
        net.load_encoder_state(partial, "'p.pt'")


def test_fusion_at_every_level_lets_each_decoder_see_the_other_modality_through_its_skips():
    net = _net(fusion_levels="all").train()
    assert len(net.skip_mia) == 4 and [m.convs[0].block[0].in_channels for m in net.skip_mia] == [4, 8, 16, 32]
    x = torch.randn(2, 2, 32, 32)
    y = x.clone()
    y[:, 1] = torch.randn(2, 32, 32)
    out = net.forward_with_features(x)
    assert [z.shape for z in out.logits] == [(2, 1, 32, 32)] * 2
    net.mia = None  # no bottleneck fusion left: only the skips couple the modalities
    assert not torch.allclose(net(x)[0], net(y)[0])
    assert _net().skip_mia is None  # the paper's default: the bottleneck only
    with pytest.raises(ConfigError, match="unknown fusion_levels 'skips'"):
        _net(fusion_levels="skips")
