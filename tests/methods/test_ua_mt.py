import math

import pytest
import torch
from torch import nn

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.losses import supervised_loss
from workbench.methods import Batch, get_method
from workbench.methods.ua_mt import binary_entropy, masked_mse, uncertainty_threshold
from workbench.train import Trainer

MODS = ["t1", "flair"]
LN2 = math.log(2)


def _method(**options):
    config = tiny_config("unused", method="ua-mt", base_channels=2, options=options)
    torch.manual_seed(0)
    return get_method("ua-mt")(MODS, config)


def _literal_entropy(p):
    return -(p * math.log(max(p, 1e-6)) + (1 - p) * math.log(max(1 - p, 1e-6)))


def _literal_masked_mse(student, teacher, threshold):
    """sum_v I(u_v < H) (f_v - f'_v)^2 / sum_v I(u_v < H), voxel by voxel."""
    s, t = student.flatten(), teacher.flatten().tolist()
    if not s.requires_grad:
        s = s.tolist()
    num, den = 0.0, 0
    for v in range(len(t)):
        if _literal_entropy(t[v]) < threshold:
            num = num + (s[v] - t[v]) ** 2
            den += 1
    return num / max(den, 1), den


def test_binary_entropy_matches_the_formula():
    p = torch.tensor([0.0, 1e-8, 0.1, 0.5, 0.7, 1.0])
    u = binary_entropy(p)
    for value, expected in zip(u.tolist(), [_literal_entropy(x) for x in p.tolist()]):
        assert value == pytest.approx(expected, abs=1e-6)
    assert float(u[3]) == pytest.approx(LN2) and float(u[0]) == 0.0 and float(u.max()) == pytest.approx(LN2)


def test_threshold_ramps_from_three_quarters_of_ln2_to_ln2():
    assert uncertainty_threshold(0, 10) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * LN2)
    assert uncertainty_threshold(5, 10) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * LN2)
    assert uncertainty_threshold(10, 10) == pytest.approx(LN2) and uncertainty_threshold(99, 10) == pytest.approx(LN2)
    method = _method(threshold_rampup_epochs=-1.0)  # all 3 epochs of 2 steps
    assert method.threshold(0) == pytest.approx(uncertainty_threshold(0, 3))
    assert method.threshold(6) == pytest.approx(LN2)


def test_masked_mse_matches_a_literal_voxel_loop_values_and_gradients():
    torch.manual_seed(0)
    student = torch.rand(2, 1, 4, 4, requires_grad=True)
    teacher = torch.rand(2, 1, 4, 4) * 0.6 + torch.tensor([0.0, 0.4]).view(2, 1, 1, 1)
    threshold = 0.9 * LN2
    mask = binary_entropy(teacher) < threshold
    loss = masked_mse(student, teacher, mask)
    (grad,) = torch.autograd.grad(loss, student)
    student_2 = student.detach().clone().requires_grad_(True)
    expected, count = _literal_masked_mse(student_2, teacher, threshold)
    assert 0 < count < teacher.numel()  # some voxels in, some out
    (expected_grad,) = torch.autograd.grad(expected, student_2)
    assert torch.allclose(loss, expected, atol=1e-7)
    assert torch.allclose(grad, expected_grad, atol=1e-7)
    assert torch.all(grad[~mask] == 0)


def test_masked_mse_with_no_certain_voxel_is_zero_not_nan():
    student = torch.rand(1, 1, 4, 4, requires_grad=True)
    loss = masked_mse(student, torch.full((1, 1, 4, 4), 0.5), torch.zeros(1, 1, 4, 4, dtype=torch.bool))
    loss.backward()
    assert float(loss) == 0.0 and torch.all(student.grad == 0)


def test_teacher_gets_no_gradient_from_the_masked_consistency():
    student = torch.rand(1, 1, 4, 4, requires_grad=True)
    teacher = torch.rand(1, 1, 4, 4, requires_grad=True)
    masked_mse(student, teacher, torch.ones(1, 1, 4, 4)).backward()
    assert teacher.grad is None and student.grad is not None


def test_step_is_sup_plus_weighted_masked_consistency_over_t_passes():
    method = _method(noise_std=0.0, consistency=2.0, rampup_epochs=0.0, mc_passes=3, threshold_rampup_epochs=1000.0)
    for module in method.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = 0.0  # every teacher pass identical: mu = the teacher's probability
    method.eval()
    g = torch.Generator().manual_seed(1)
    batch = Batch(
        torch.randn(2, 2, 16, 16, generator=g),
        (torch.rand(2, 1, 16, 16, generator=g) > 0.7).float(),
        torch.randn(2, 2, 16, 16, generator=g),
    )
    torch.manual_seed(2)
    with torch.no_grad():
        for i, s in enumerate(method.streams()):
            for p in s.student.parameters():
                p.add_(0.05 * torch.randn_like(p))
            # spread the teacher's logits around p = 0.785 (entropy 0.75 ln 2): some voxels certain, some not
            head = s.teacher.decoder.head
            head.weight.mul_(500.0)
            head.bias.zero_()
            head.bias.fill_(1.3 - float(s.teacher(torch.cat([batch.x_l, batch.x_u])[:, i : i + 1]).mean()))
    losses = method.training_step(batch, step=0)
    threshold = method.threshold(0)
    assert float(losses["threshold_t1"]) == pytest.approx(threshold) and threshold < 0.76 * LN2
    assert {"cons_t1", "certain_t1", "threshold_t1", "cons_flair", "certain_flair"} <= set(losses)
    expected = 0.0
    for i, m in enumerate(MODS):
        x = torch.cat([batch.x_l, batch.x_u])[:, i : i + 1]
        with torch.no_grad():
            cons, count = _literal_masked_mse(
                torch.sigmoid(method.nets[m](x)), torch.sigmoid(method.teachers[m](x)), threshold
            )
            sup = float(supervised_loss(method.nets[m](batch.x_l[:, i : i + 1]), batch.y_l))
        assert 0 < count < x.numel()
        assert float(losses[f"certain_{m}"]) == pytest.approx(count / x.numel())
        assert float(losses[f"cons_{m}"]) == pytest.approx(cons, rel=1e-5)
        expected += sup + 2.0 * cons
    assert float(losses["loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("input_", "rows"),
    [
        ("single", {"t1", "flair"}),
        ("both", {"fused", "t1 only", "flair only"}),
        ("concat", {"fused", "t1 only", "flair only"}),
    ],
)
def test_tiny_run_end_to_end(brats_dir, tmp_path, input_, rows):
    config = tiny_config(brats_dir, method="ua-mt", unlabeled_batch_size=2, options={"input": input_, "mc_passes": 2})
    trainer = Trainer(config, tmp_path / input_, quiet=True)
    result = trainer.fit()
    trainer.close()
    train = read_events(tmp_path / input_, "train")
    suffixes = ["_t1", "_flair"] if input_ == "single" else [""]
    assert len(train) == 3
    for record in train:
        assert {f"{k}{s}" for k in ("sup", "cons", "certain", "threshold") for s in suffixes} <= set(record)
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    assert train[-1]["threshold" + suffixes[0]] > train[0]["threshold" + suffixes[0]]
    assert set(result["summary"]) == rows
    for row in result["summary"].values():
        assert math.isfinite(row["dsc"]) and math.isfinite(row["sens"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input": "mm"}, "unknown input 'mm'; choose one of: single, both, concat"),
        ({"mc_passes": 0}, "mc_passes=0: must be >= 1"),
        ({"threshold_start": 1.5}, "threshold_start=1.5"),
        ({"T": 8}, "has no option 'T'"),
    ],
)
def test_bad_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        _method(**options)
    assert "\n" not in str(info.value)
