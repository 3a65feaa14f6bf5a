import torch

from workbench.nets import CrossViewPair, UNet


def test_pair_is_two_unets_with_separate_parameters():
    torch.manual_seed(0)
    pair = CrossViewPair(1, 1, base_channels=4)
    assert len(pair.subnets) == 2 and all(isinstance(net, UNet) for net in pair.subnets)
    ids = [{id(p) for p in net.parameters()} for net in pair.subnets]
    assert not ids[0] & ids[1]  # non-shared parameters (section 3.1)
    a, b = (dict(net.named_parameters()) for net in pair.subnets)
    conv = "encoder.levels.0.block.0.weight"
    assert not torch.equal(a[conv], b[conv])  # separate random initialisation


def test_shapes_and_equal_sum_inference():
    torch.manual_seed(0)
    pair = CrossViewPair(2, 1, base_channels=4).eval()
    x = torch.randn(3, 2, 32, 48)
    logits, feats = pair.forward_pair(x)
    assert [t.shape for t in logits] == [(3, 1, 32, 48)] * 2
    assert [t.shape for t in feats] == [(3, 64, 2, 3)] * 2  # f_i = E_i(x), 16 * base channels
    assert not torch.allclose(logits[0], logits[1])  # the two subnets answer differently
    mean = (torch.sigmoid(logits[0]) + torch.sigmoid(logits[1])) / 2
    assert torch.allclose(pair.probabilities(x), mean)  # section 3.3: (P_0 + P_1) / 2
    out, features = pair.forward_with_features(x)
    assert torch.allclose(torch.sigmoid(out), mean, atol=1e-6)
    assert features["bottleneck"].shape == (3, 128, 2, 3) and features["decoder"].shape == (3, 8, 32, 48)
    assert torch.equal(features["bottleneck"][:, :64], feats[0])  # subnet 0 first, then subnet 1
    assert torch.equal(pair(x), out)
