import pytest
import torch
from torch import nn

from workbench.nets import UNet
from workbench.teachers import BMAPool, ema_update, frozen_copy, mc_dropout_pseudo_labels


def _pair():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = frozen_copy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.fill_(2.0)
    return teacher, student


def test_ema_decay_zero_copies_half_averages_one_keeps():
    teacher, student = _pair()
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.5)
    for b, t, s in zip(before, teacher.parameters(), student.parameters()):
        assert torch.allclose(t, (b + s) / 2)
    ema_update(teacher, student, 0.0)
    for t, s in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(t, s)
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)
    snapshot = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        student[0].weight.add_(5)
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(snapshot, teacher.parameters()))


def test_teacher_has_no_grad():
    teacher, _ = _pair()
    assert not any(p.requires_grad for p in teacher.parameters())


def _literal_bma(m, p, accs, alpha0=0.99):
    """Algorithm 1 lines 6-13 written out, with a scalar 'weight' for the teacher and
    theta''_t = t (the epoch number) for the high-performance model."""
    pool, theta, log = [], None, []
    for t, acc in accs:
        if m < t <= m + p:
            pool.append(acc)
        elif t == m + p + 1:
            theta = float(t)
        elif t > m + p + 1 and acc > min(pool):
            acc_min = min(pool)
            pool[pool.index(acc_min)] = acc
            alpha = min(1 - (acc - acc_min) / acc, alpha0)
            theta = alpha * theta + (1 - alpha) * t
        log.append((list(pool), theta))
    return log


def test_bma_pool_matches_algorithm_1():
    accs = [(t, a) for t, a in enumerate([0.1, 0.3, 0.2, 0.25, 0.5, 0.4, 0.45, 0.2, 0.6, 0.55], start=1)]
    pool = BMAPool(m=2, p=3)
    theta = {"w": None}
    current = {"t": 0}

    def update(alpha):
        theta["w"] = float(current["t"]) if alpha == 0.0 else alpha * theta["w"] + (1 - alpha) * current["t"]

    decisions = []
    for t, acc in accs:
        current["t"] = t
        decisions.append(pool.step(t, acc, update))
        expected_pool, expected_theta = _literal_bma(2, 3, accs[:t])[-1]
        assert pool.pool == expected_pool
        assert theta["w"] == pytest.approx(expected_theta) if expected_theta is not None else theta["w"] is None
    actions = [d.action for d in decisions]
    assert actions == ["wait", "wait", "fill", "fill", "fill", "init", "update", "skip", "update", "update"]
    # epoch 7: acc 0.45 beats min(0.2, 0.25, 0.5) = 0.2 at index 0; alpha = 1 - (0.45 - 0.2) / 0.45
    d7 = decisions[6]
    assert d7.replaced_index == 0 and d7.acc_min == 0.2
    assert d7.alpha == pytest.approx(1 - 0.25 / 0.45)
    assert d7.pool_before == [0.2, 0.25, 0.5] and d7.pool_after == [0.45, 0.25, 0.5]
    assert pool.n_updates == 4


def test_bma_alpha_is_capped_at_alpha0():
    pool = BMAPool(m=0, p=1)
    pool.step(1, 0.5, lambda a: None)
    pool.step(2, 0.5, lambda a: None)
    got = []
    pool.step(3, 0.5001, got.append)
    assert got == [pytest.approx(0.99)]


def test_mc_dropout_pseudo_labels_are_soft_means_and_keep_bn_frozen():
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=4)
    net.train()
    net(torch.randn(4, 1, 32, 32))  # give BN some running stats
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    x = torch.randn(2, 1, 32, 32)
    p1 = mc_dropout_pseudo_labels(net, x, passes=4, noise_std=0.1)
    p2 = mc_dropout_pseudo_labels(net, x, passes=4, noise_std=0.1)
    assert p1.shape == (2, 1, 32, 32) and 0 <= p1.min() and p1.max() <= 1
    assert not torch.equal(p1, p2)  # stochastic: dropout + noise
    assert torch.equal(bn.running_mean, stats)  # BN in eval mode during sampling
    assert net.training  # mode restored
    net.eval()
    mc_dropout_pseudo_labels(net, x, passes=1, noise_std=0.0)
    assert not net.training  # eval mode restored too


def test_mc_noise_is_relative_to_the_image_scale():
    class Identity(nn.Module):
        def forward(self, x):
            return torch.logit(x.clamp(1e-4, 1 - 1e-4))  # sigmoid(identity) = the noisy input

    torch.manual_seed(0)
    small = torch.full((1, 1, 64, 64), 0.1)
    small[..., :32] = 0.2  # an image with std 0.05
    noisy = mc_dropout_pseudo_labels(Identity(), small, passes=1, noise_std=0.1)
    assert float((noisy - small).std()) == pytest.approx(0.1 * float(small.std()), rel=0.1)
