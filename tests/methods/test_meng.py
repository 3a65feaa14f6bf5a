import math

import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.methods import Batch, get_method
from workbench.methods.meng import mutual_mse_terms
from workbench.train import Trainer

MODS = ["t1", "flair"]


def _method(**options):
    config = tiny_config("unused", method="meng-fusion", options=options)
    torch.manual_seed(0)
    return get_method("meng-fusion")(MODS, config), config


def _batch(k=3):
    torch.manual_seed(1)
    return Batch(torch.randn(4, 2, 32, 32), (torch.rand(4, 1, 32, 32) > 0.7).float(), torch.randn(k, 2, 32, 32))


# ---------------------------------------------------------------- literal oracles
def _loop_ce_dice(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Eq. 4 for one branch (BCE + soft Dice, eps 1e-5), value and d/dlogits, element by element."""
    z, t = logits.flatten().tolist(), y.flatten().tolist()
    n = len(z)
    p = [1.0 / (1.0 + math.exp(-v)) for v in z]
    bce = sum(-(ti * math.log(pi) + (1 - ti) * math.log(1 - pi)) for pi, ti in zip(p, t)) / n
    inter, sp, sy, eps = sum(pi * ti for pi, ti in zip(p, t)), sum(p), sum(t), 1e-5
    dice = 1 - (2 * inter + eps) / (sp + sy + eps)
    grad = []
    for pi, ti in zip(p, t):
        d_bce = (pi - ti) / n
        d_dice_dp = -(2 * ti * (sp + sy + eps) - (2 * inter + eps)) / (sp + sy + eps) ** 2
        grad.append(d_bce + d_dice_dp * pi * (1 - pi))
    return bce + dice, torch.tensor(grad, dtype=torch.float64).view_as(logits)


def _loop_mutual(pa: torch.Tensor, pb: torch.Tensor) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Eq. 6 terms and the gradients of their sum w.r.t. pa, pb, with pl^a, pl^b constants."""
    a, b = pa.flatten().tolist(), pb.flatten().tolist()
    n = len(a)
    term_a = sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / n  # ||f(x^a) - pl^b||^2
    term_b = sum((bi - ai) ** 2 for ai, bi in zip(a, b)) / n  # ||g(x^b) - pl^a||^2
    grad_a = [2 * (ai - bi) / n for ai, bi in zip(a, b)]  # only term_a depends on f(x^a)
    grad_b = [2 * (bi - ai) / n for ai, bi in zip(a, b)]
    return term_a, term_b, torch.tensor(grad_a).view_as(pa), torch.tensor(grad_b).view_as(pb)


def test_supervised_loss_matches_the_literal_loop():
    method, _ = _method()
    torch.manual_seed(2)
    logits = torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(2, 1, 3, 4) > 0.5).double()
    loss = method.sup_loss(logits, y, method.opts.sup_weights)
    loss.backward()
    value, grad = _loop_ce_dice(logits.detach(), y)
    assert loss.item() == pytest.approx(value, rel=1e-6)
    assert torch.allclose(logits.grad.double(), grad, atol=1e-6)


def test_run_weights_option_uses_eq3_of_semi_cml():
    method, config = _method(sup_weights="run")
    torch.manual_seed(2)
    logits, y = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    assert torch.allclose(method.sup_loss(logits, y, method.opts.sup_weights), method.sup_loss(logits, y))
    assert config.bce_weight == 10 and config.dice_weight == 7


def test_mutual_terms_match_the_literal_loop_with_stop_gradient():
    torch.manual_seed(3)
    pa = torch.rand(2, 1, 3, 3, requires_grad=True)
    pb = torch.rand(2, 1, 3, 3, requires_grad=True)
    term_a, term_b = mutual_mse_terms(pa, pb)
    ta, tb, ga, gb = _loop_mutual(pa.detach(), pb.detach())
    assert term_a.item() == pytest.approx(ta, rel=1e-5) and term_b.item() == pytest.approx(tb, rel=1e-5)
    (term_a + term_b).backward()
    assert torch.allclose(pa.grad, ga, atol=1e-7) and torch.allclose(pb.grad, gb, atol=1e-7)
    pa.grad, pb.grad = None, None
    mutual_mse_terms(pa, pb)[0].backward()  # the first term never moves its pseudo-label pl^b
    assert pb.grad is None and torch.allclose(pa.grad, ga, atol=1e-7)


def test_mse_term_never_reaches_the_other_branch_decoder():
    method, _ = _method()
    losses = method.training_step(_batch(), step=0)
    losses["mse_t1"].backward()  # ||f(x^a) - pl^b||^2: branch a is pulled towards b's detached output
    grad = lambda module: sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None)  # noqa: E731
    assert grad(method.net.decoders[0]) > 0
    assert grad(method.net.decoders[1]) == 0
    assert grad(method.net.encoders[1]) > 0  # but b's encoder is reached through the fusion layers
    plain, _ = _method(mmf=False)
    plain.training_step(_batch(), step=0)["mse_t1"].backward()
    assert grad(plain.net.encoders[1]) == 0 and grad(plain.net.decoders[1]) == 0


def test_total_is_sup_plus_alpha_unsup_recomputed():
    method, _ = _method(alpha=0.7)
    method.eval()  # no dropout, BatchNorm running stats: recompute exactly
    batch = _batch()
    losses = method.training_step(batch, step=0)
    assert set(losses) == {"sup_t1", "sup_flair", "mse_t1", "mse_flair", "unsup", "alpha", "loss"}
    logits_l = method.net(batch.x_l)
    sup = sum(_loop_ce_dice(z.detach().double(), batch.y_l.double())[0] for z in logits_l)
    pa, pb = (torch.sigmoid(z).detach() for z in method.net(batch.x_u))
    ta, tb, _, _ = _loop_mutual(pa, pb)
    assert losses["loss"].item() == pytest.approx(sup + 0.7 * (ta + tb), rel=1e-5)
    assert losses["mse_t1"].item() == pytest.approx(ta, rel=1e-5)


def test_alpha_ramp_up_is_optional():
    method, _ = _method()
    assert method.alpha(0) == 1.0  # paper: alpha = 1, no ramp-up
    ramped, config = _method(rampup_epochs=2.0, alpha=2.0)
    assert ramped.alpha(0) == pytest.approx(2.0 * math.exp(-5))
    assert ramped.alpha(2 * config.steps_per_epoch) == 2.0


@pytest.mark.parametrize(
    "flags",
    [dict(mmf=False, mae=False, mcml=False), dict(mae=False, mcml=False), dict(mcml=False), dict(mae=False), {}],
)
def test_table2_rows_train_one_step(flags):
    method, _ = _method(**flags)
    losses = method.training_step(_batch(), step=0)
    assert torch.isfinite(losses["loss"])
    assert ("unsup" in losses) == flags.get("mcml", True)
    assert (method.net.fusions is not None) == flags.get("mmf", True)
    assert (method.net.enhance is not None) == flags.get("mae", True)
    losses["loss"].backward()


def test_predict_and_features_are_keyed_by_modality():
    method, _ = _method()
    method.eval()
    x = torch.randn(2, 2, 32, 32)
    probs = method.predict(x)
    assert list(probs) == MODS and all(p.shape == (2, 1, 32, 32) for p in probs.values())
    assert all(((p >= 0) & (p <= 1)).all() for p in probs.values())
    with torch.no_grad():
        feats = method.features(x)
    assert list(feats) == MODS
    assert feats["flair"]["bottleneck"].shape == (2, 64, 2, 2) and feats["t1"]["decoder"].shape == (2, 4, 32, 32)


def test_bad_options_are_clear():
    with pytest.raises(ConfigError, match="has no option 'beta'") as err:
        _method(beta=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown sup_weights 'x'"):
        _method(sup_weights="x")
    with pytest.raises(ConfigError, match="option alpha='a': expected a number"):
        _method(alpha="a")
    with pytest.raises(ConfigError, match="needs exactly 2 modalities"):
        get_method("meng-fusion")(["t1"], tiny_config("unused", method="meng-fusion"))


# ---------------------------------------------------------------- through the loop
def _config(brats_dir, **overrides):
    return tiny_config(brats_dir, method="meng-fusion", epochs=2, unlabeled_batch_size=2, **overrides)


def test_tiny_run_end_to_end_and_exact_resume(brats_dir, tmp_path):
    full = Trainer(_config(brats_dir), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    train = read_events(tmp_path / "full", "train")
    assert len(train) == 2 and all(math.isfinite(r[k]) for r in train for k in ("loss", "unsup", "sup_t1"))
    assert set(expected["summary"]) == {"t1", "flair"}  # one row per modality branch
    assert all(0.0 <= r["dsc"] <= 1.0 for r in expected["per_patient"])
    assert set(read_events(tmp_path / "full", "val")[-1]["dsc"]) == {"t1", "flair"}

    first = Trainer(_config(brats_dir), tmp_path / "cut", quiet=True)
    assert first.fit(stop_after=1) is None  # stopped mid-run, checkpointed
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    result = resumed.fit()
    resumed.close()
    assert result["per_patient"] == expected["per_patient"]
    for name, value in full.method.state_dict().items():
        assert torch.equal(value, resumed.method.state_dict()[name]), name
    assert read_events(tmp_path / "full", "train") == read_events(tmp_path / "cut", "train")
