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
