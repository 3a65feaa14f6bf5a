import pytest
import torch
import torch.nn.functional as F

from workbench.losses import bce_loss, soft_dice_loss, supervised_loss


def test_soft_dice_hand_case():
    p = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # 2 * (1 + 0.5) / (1.5 + 2) = 3 / 3.5
    assert torch.isclose(soft_dice_loss(p, y, eps=0.0), torch.tensor(1 - 3 / 3.5))


def test_soft_dice_perfect_and_empty():
    y = torch.zeros(2, 1, 4, 4)
    assert soft_dice_loss(y, y) == 0  # both empty: eps makes it 1 - 1
    y[0, 0, 1, 1] = 1
    assert torch.isclose(soft_dice_loss(y.clone(), y), torch.tensor(0.0), atol=1e-6)


def test_supervised_loss_is_weighted_sum_eq3():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    y = (torch.rand(3, 1, 8, 8) > 0.5).float()
    # literal: mean over pixels of -[y log s + (1-y) log(1-s)], and batch-pooled soft Dice
    s = torch.sigmoid(logits)
    bce = -(y * torch.log(s) + (1 - y) * torch.log(1 - s)).mean()
    dice = 1 - 2 * (s * y).sum() / (s.sum() + y.sum())
    expected = 10 * bce + 7 * dice
    assert torch.isclose(supervised_loss(logits, y), expected, atol=1e-4)
    assert torch.isclose(bce_loss(logits, y), F.binary_cross_entropy(s, y), atol=1e-6)


# ---------------------------------------------------------------- ASC (eqs. 6-10) vs a literal loop
from workbench.losses import asc_loss, dice_similarity_matrix, mse_consistency, nce_loss  # noqa: E402


def _s_dice(y1, y2, eps=1e-6):
    """Eq. 8, literally."""
    return 2 * (y1 * y2).sum() / ((y1 + y2).sum() + eps)


def _literal_asc(fa, gb):
    """Eqs. 9-10 anchor by anchor: positive = the pair in the other modality, negatives = the
    other 2K - 2 maps (both modalities, other slices)."""
    k = fa.shape[0]
    items = [fa[i] for i in range(k)] + [gb[i] for i in range(k)]
    total = 0.0
    for a in range(2 * k):
        pos = (a + k) % (2 * k)
        negatives = [h for h in range(2 * k) if h not in (a, pos)]
        assert len(negatives) == 2 * k - 2
        num = torch.exp(_s_dice(items[a], items[pos]))
        den = num + sum(torch.exp(_s_dice(items[a], items[h])) for h in negatives)
        total = total - torch.log(num / den)
    return total / (2 * k)


def test_asc_matches_literal_loop_values_and_gradients():
    torch.manual_seed(0)
    for k in (2, 3, 5):
        fa = torch.rand(k, 1, 6, 7, dtype=torch.float64, requires_grad=True)
        gb = torch.rand(k, 1, 6, 7, dtype=torch.float64, requires_grad=True)
        fast = asc_loss(fa, gb)
        slow = _literal_asc(fa, gb)
        assert torch.allclose(fast, slow, atol=1e-10)
        g_fast = torch.autograd.grad(fast, (fa, gb))
        g_slow = torch.autograd.grad(slow, (fa, gb))
        for a, b in zip(g_fast, g_slow):
            assert torch.allclose(a, b, atol=1e-10)


def test_asc_matrix_is_eq8_and_loss_falls_when_pairs_agree():
    torch.manual_seed(1)
    fa = torch.rand(4, 1, 8, 8)
    loss, matrix = asc_loss(fa, fa.flip(0), return_matrix=True)
    assert matrix.shape == (8, 8)
    assert torch.allclose(matrix[0, 5], _s_dice(fa[0], fa[2]), atol=1e-6)  # item 5 = fb[1] = fa[2]
    assert torch.allclose(matrix, matrix.T)
    # pairs that agree (and differ from the other slices) give a lower loss than random pairs
    shapes = torch.zeros(4, 1, 8, 8)
    for i in range(4):
        shapes[i, 0, 2 * i : 2 * i + 2] = 1
    assert asc_loss(shapes, shapes) < asc_loss(shapes, shapes.roll(1, 0))


def test_dice_similarity_of_empty_maps_is_zero_not_nan():
    matrix = dice_similarity_matrix(torch.zeros(3, 4, 4))
    assert torch.equal(matrix, torch.zeros(3, 3))


def test_nce_is_the_same_structure_with_cosine_similarity():
    torch.manual_seed(2)
    a, b = torch.rand(3, 10, dtype=torch.float64), torch.rand(3, 10, dtype=torch.float64)
    items = list(a) + list(b)
    cos = lambda u, v: (u @ v) / (u.norm() * v.norm()) / 0.5  # noqa: E731
    expected = 0.0
    for i in range(6):
        pos = (i + 3) % 6
        den = sum(torch.exp(cos(items[i], items[h])) for h in range(6) if h != i)
        expected -= torch.log(torch.exp(cos(items[i], items[pos])) / den)
    assert torch.allclose(nce_loss(a, b, temperature=0.5), expected / 6, atol=1e-10)


def test_mse_consistency_eq5():
    a, b = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert mse_consistency(a, b) == 1.0


@pytest.mark.parametrize("similarity", ["dice", "cosine"])
def test_similarity_matrices_stay_fp32_under_bf16_autocast(similarity):
    """Eqs. 8-10 and NCE: under autocast the products would run in bf16 (error ~1e-3); the
    matrices are computed in fp32 inside it, equal to the plain fp32 result."""
    from workbench.losses import cosine_similarity_matrix, dice_similarity_matrix

    fn = dice_similarity_matrix if similarity == "dice" else cosine_similarity_matrix
    maps = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = fn(maps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fn(maps)
        bf16 = maps.flatten(1) @ maps.flatten(1).T  # what a bare matmul gives there
    assert inside.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    torch.testing.assert_close(inside, plain, rtol=1e-6, atol=1e-6)
