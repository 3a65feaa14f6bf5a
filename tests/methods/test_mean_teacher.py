import math

import pytest
import torch
from torch import nn

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.losses import supervised_loss
from workbench.methods import Batch, get_method
from workbench.methods.mean_teacher import add_input_noise, ema_decay_at
from workbench.train import Trainer

MODS = ["t1", "flair"]


def _method(**options):
    config = tiny_config("unused", method="mean-teacher", base_channels=2, options=options)
    torch.manual_seed(0)
    return get_method("mean-teacher")(MODS, config)


def _batch(n=2, k=2, size=16):
    g = torch.Generator().manual_seed(1)
    return Batch(
        torch.randn(n, 2, size, size, generator=g),
        (torch.rand(n, 1, size, size, generator=g) > 0.7).float(),
        torch.randn(k, 2, size, size, generator=g),
    )


def _deterministic(method):
    """No dropout anywhere, eval-mode BatchNorm: every forward pass is a pure function."""
    for module in method.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = 0.0
    method.eval()
    return method


def _perturb_students(method, scale=0.05):
    torch.manual_seed(2)
    with torch.no_grad():
        for s in method.streams():
            for p in s.student.parameters():
                p.add_(scale * torch.randn_like(p))


def _literal_mse(student_probs, teacher_probs):
    """(1/N) sum over every pixel of (p_s - p_t)^2, one pixel at a time (autograd through
    the tensor elements when ``student_probs`` requires grad, plain floats otherwise)."""
    s, t = student_probs.flatten(), teacher_probs.flatten()
    if not s.requires_grad:
        s, t = s.tolist(), t.tolist()
    total = 0.0
    for i in range(len(s)):
        total = total + (s[i] - t[i]) ** 2
    return total / len(s)


def test_consistency_matches_a_literal_pixel_loop_values_and_gradients():
    method = _deterministic(_method(noise_std=0.0))
    _perturb_students(method)
    teacher = method.teachers["t1"]
    images = torch.randn(2, 1, 16, 16)
    probs = torch.rand(2, 1, 16, 16, requires_grad=True)
    loss, extras = method.consistency_loss(teacher, images, probs, step=0)
    assert extras == {}
    (grad,) = torch.autograd.grad(loss, probs)
    probs_2 = probs.detach().clone().requires_grad_(True)
    target = torch.sigmoid(teacher(images))
    expected = _literal_mse(probs_2, target)
    (expected_grad,) = torch.autograd.grad(expected, probs_2)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-7)
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("consistency_on", ["all", "unlabeled"])
def test_step_total_is_sup_plus_weighted_consistency(consistency_on):
    method = _deterministic(_method(noise_std=0.0, consistency=2.5, rampup_epochs=0.0, consistency_on=consistency_on))
    _perturb_students(method)
    batch = _batch()
    losses = method.training_step(batch, step=0)
    assert set(losses) == {"sup_t1", "cons_t1", "sup_flair", "cons_flair", "w", "loss"}
    expected = 0.0
    for i, m in enumerate(MODS):
        x_l, x_u = batch.x_l[:, i : i + 1], batch.x_u[:, i : i + 1]
        x = torch.cat([x_l, x_u]) if consistency_on == "all" else x_u
        with torch.no_grad():
            cons = _literal_mse(torch.sigmoid(method.nets[m](x)), torch.sigmoid(method.teachers[m](x)))
            sup = float(supervised_loss(method.nets[m](x_l), batch.y_l))
        assert float(losses[f"cons_{m}"]) == pytest.approx(cons, rel=1e-5)
        expected += sup + 2.5 * cons
    assert float(losses["w"]) == 2.5
    assert float(losses["loss"]) == pytest.approx(expected, rel=1e-5)
    losses["loss"].backward()
    for m in MODS:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.nets[m].parameters())
        assert all(p.grad is None and not p.requires_grad for p in method.teachers[m].parameters())


def test_consistency_weight_ramps_up():
    method = _method(consistency=3.0, rampup_epochs=2.0)  # steps_per_epoch = 2
    assert method.consistency_weight(0) == pytest.approx(3.0 * math.exp(-5))
    assert method.consistency_weight(2) == pytest.approx(3.0 * math.exp(-5 * 0.25))
    assert method.consistency_weight(4) == 3.0


@pytest.mark.parametrize(
    ("input_", "warmup", "step", "decay"),
    [("single", True, 5, 1 - 1 / 6), ("single", True, 500, 0.99), ("single", False, 1, 0.99), ("both", False, 3, 0.99)],
)
def test_ema_teacher_moves_by_the_decay_formula(input_, warmup, step, decay):
    method = _method(input=input_, ema_warmup=warmup)
    assert ema_decay_at(step, 0.99, warmup) == pytest.approx(decay)
    _perturb_students(method, scale=1.0)
    before = [{k: v.clone() for k, v in s.teacher.state_dict().items()} for s in method.streams()]
    method.after_optimizer_step(step)
    for s, old in zip(method.streams(), before):
        student = s.student.state_dict()
        for name, value in s.teacher.state_dict().items():
            if value.dtype.is_floating_point:
                assert torch.allclose(value, decay * old[name] + (1 - decay) * student[name], atol=1e-6), name
            else:
                assert torch.equal(value, student[name]), name


def test_teacher_starts_as_a_copy_and_is_not_optimised(brats_dir, tmp_path):
    method = _method()
    for s in method.streams():
        assert all(torch.equal(a, b) for a, b in zip(s.teacher.state_dict().values(), s.student.state_dict().values()))
    trainer = Trainer(
        tiny_config(brats_dir, method="mean-teacher", epochs=1, steps_per_epoch=1), tmp_path / "r", quiet=True
    )
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    teacher_ids = {id(p) for t in trainer.method.teachers.values() for p in t.parameters()}
    assert teacher_ids and not optimised & teacher_ids
    assert {id(p) for n in trainer.method.nets.values() for p in n.parameters()} <= optimised
    assert any(k.startswith("teachers.") for k in trainer.method.state_dict())  # checkpointed
    trainer.close()


def test_input_noise_is_relative_to_each_channel():
    torch.manual_seed(0)
    x = torch.stack([torch.randn(64, 64), 100 * torch.randn(64, 64)])[None]
    noise = add_input_noise(x, 0.1) - x
    for c in range(2):
        assert float(noise[0, c].std()) == pytest.approx(0.1 * float(x[0, c].std()), rel=0.1)
    assert add_input_noise(x, 0.0) is x


@pytest.mark.parametrize(
    ("input_", "rows"),
    [
        ("single", {"t1", "flair"}),
        ("both", {"fused", "t1 only", "flair only"}),
        ("concat", {"fused", "t1 only", "flair only"}),
    ],
)
def test_tiny_run_end_to_end(brats_dir, tmp_path, input_, rows):
    config = tiny_config(brats_dir, method="mean-teacher", unlabeled_batch_size=2, options={"input": input_})
    trainer = Trainer(config, tmp_path / input_, quiet=True)
    result = trainer.fit()
    trainer.close()
    train = read_events(tmp_path / input_, "train")
    assert len(train) == 3
    suffixes = ["_t1", "_flair"] if input_ == "single" else [""]
    for record in train:
        assert {f"{k}{s}" for k in ("sup", "cons") for s in suffixes} | {"w", "loss"} <= set(record)
        assert all(math.isfinite(v) for k, v in record.items() if isinstance(v, float))
    assert set(result["summary"]) == rows
    for row in result["summary"].values():
        assert math.isfinite(row["dsc"]) and math.isfinite(row["sens"])


def test_resume_mid_run_gives_the_same_final_metrics(brats_dir, tmp_path):
    config = dict(method="mean-teacher", unlabeled_batch_size=2, options={"rampup_epochs": 2.0})
    full = Trainer(tiny_config(brats_dir, **config), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    first = Trainer(tiny_config(brats_dir, **config), tmp_path / "cut", quiet=True)
    assert first.fit(stop_after=1) is None
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    result = resumed.fit()
    resumed.close()
    assert result["per_patient"] == expected["per_patient"]
    full_state, resumed_state = full.method.state_dict(), resumed.method.state_dict()
    assert any(k.startswith("teachers.") for k in full_state)
    for name, value in full_state.items():
        assert torch.equal(value, resumed_state[name]), name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input": "triple"}, "unknown input 'triple'; choose one of: single, both, concat"),
        ({"consistency_on": "labeled"}, "unknown consistency_on 'labeled'; choose one of: all, unlabeled"),
        ({"predict_with": "ema"}, "unknown predict_with 'ema'"),
        ({"ema_decay": 1.5}, "ema_decay=1.5: must be in"),
        ({"decay": 0.9}, "has no option 'decay'"),
    ],
)
def test_bad_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        _method(**options)
    assert "\n" not in str(info.value)
