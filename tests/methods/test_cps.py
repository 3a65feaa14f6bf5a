import math

import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.losses import supervised_loss
from workbench.methods import Batch, get_method
from workbench.methods.cps import cps_loss, hard_pseudo_labels
from workbench.train import Trainer

MODS = ["t1", "flair"]


def _method(**options):
    config = tiny_config("unused", method="cps", base_channels=2, options=options)
    torch.manual_seed(0)
    return get_method("cps")(MODS, config)


def _literal_bce(logit, label):
    """-[y ln sigma(z) + (1 - y) ln(1 - sigma(z))] for one pixel (z a 0-d tensor or float)."""
    p = 1 / (1 + torch.exp(-logit)) if isinstance(logit, torch.Tensor) else 1 / (1 + math.exp(-logit))
    log = torch.log if isinstance(p, torch.Tensor) else math.log
    return -(label * log(p) + (1 - label) * log(1 - p))


def _literal_cps(logits_1, logits_2):
    """mean_i l_ce(p_1i, [p_2i > 0.5]) + mean_i l_ce(p_2i, [p_1i > 0.5]), pixel by pixel; the
    pseudo-labels are Python numbers, so no gradient can reach them."""
    a, b = logits_1.flatten(), logits_2.flatten()
    if not a.requires_grad:
        a, b = a.tolist(), b.tolist()
    label_a = [1.0 if 1 / (1 + math.exp(-float(z))) > 0.5 else 0.0 for z in a]
    label_b = [1.0 if 1 / (1 + math.exp(-float(z))) > 0.5 else 0.0 for z in b]
    n = len(label_a)
    term_1 = sum(_literal_bce(a[i], label_b[i]) for i in range(n)) / n
    term_2 = sum(_literal_bce(b[i], label_a[i]) for i in range(n)) / n
    return term_1 + term_2


def test_cps_cross_terms_match_a_literal_pixel_loop_values_and_gradients():
    torch.manual_seed(0)
    logits_1 = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    logits_2 = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = cps_loss(logits_1, logits_2)
    grads = torch.autograd.grad(loss, [logits_1, logits_2])
    a, b = (t.detach().clone().requires_grad_(True) for t in (logits_1, logits_2))
    expected = _literal_cps(a, b)
    expected_grads = torch.autograd.grad(expected, [a, b])
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g.double(), e, atol=1e-7)
    # each network's gradient is that of BCE against the *other's* fixed labels: (sigma(z) - y) / n
    n = logits_1.numel()
    assert torch.allclose(grads[0].double(), (torch.sigmoid(a) - (b > 0).double()).detach() / n, atol=1e-7)


def test_hard_pseudo_labels_threshold_at_one_half_without_gradient():
    z = torch.tensor([-1.0, 0.0, 1e-4, 3.0], requires_grad=True)
    y = hard_pseudo_labels(z)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0] and not y.requires_grad


@pytest.mark.parametrize("input_", ["single", "both"])
def test_the_two_networks_start_different(input_):
    method = _method(input=input_)
    for pair in method.pairs():
        first, second = pair.net_1.state_dict(), pair.net_2.state_dict()
        assert any(not torch.equal(first[k], second[k]) for k in first if first[k].dtype.is_floating_point)


@pytest.mark.parametrize("consistency_on", ["all", "unlabeled"])
def test_step_total_is_both_sup_losses_plus_lambda_cps(consistency_on):
    method = _method(cps_weight=1.5, consistency_on=consistency_on)
    method.eval()  # deterministic forward passes, to recompute every term
    g = torch.Generator().manual_seed(1)
    batch = Batch(
        torch.randn(2, 2, 16, 16, generator=g),
        (torch.rand(2, 1, 16, 16, generator=g) > 0.7).float(),
        torch.randn(2, 2, 16, 16, generator=g),
    )
    losses = method.training_step(batch, step=0)
    assert set(losses) == {f"{k}_{m}" for k in ("sup", "sup_peer", "cps") for m in MODS} | {"lambda", "loss"}
    expected = 0.0
    for i, m in enumerate(MODS):
        x_l, x_u = batch.x_l[:, i : i + 1], batch.x_u[:, i : i + 1]
        with torch.no_grad():
            net, peer = method.nets[m], method.peers[m]
            cps = _literal_cps(net(x_u), peer(x_u))
            if consistency_on == "all":
                cps += _literal_cps(net(x_l), peer(x_l))
            sup = float(supervised_loss(net(x_l), batch.y_l) + supervised_loss(peer(x_l), batch.y_l))
        assert float(losses[f"cps_{m}"]) == pytest.approx(cps, rel=1e-5)
        expected += sup + 1.5 * cps
    assert float(losses["lambda"]) == 1.5
    assert float(losses["loss"]) == pytest.approx(expected, rel=1e-5)
    losses["loss"].backward()
    for pair in method.pairs():
        for net in (pair.net_1, pair.net_2):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_optional_rampup_of_lambda():
    assert _method().cps_weight(0) == 1.0  # no ramp-up by default (paper)
    method = _method(cps_weight=2.0, rampup_epochs=2.0)  # steps_per_epoch = 2
    assert method.cps_weight(0) == pytest.approx(2.0 * math.exp(-5)) and method.cps_weight(4) == 2.0


@pytest.mark.parametrize(
    ("input_", "rows"),
    [
        ("single", {"t1", "flair"}),
        ("both", {"fused", "t1 only", "flair only"}),
        ("concat", {"fused", "t1 only", "flair only"}),
    ],
)
def test_tiny_run_end_to_end(brats_dir, tmp_path, input_, rows):
    config = tiny_config(brats_dir, method="cps", unlabeled_batch_size=2, options={"input": input_})
    trainer = Trainer(config, tmp_path / input_, quiet=True)
    result = trainer.fit()
    trainer.close()
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in trainer.method.parameters()} == optimised  # both networks of every pair train
    train = read_events(tmp_path / input_, "train")
    suffixes = ["_t1", "_flair"] if input_ == "single" else [""]
    assert len(train) == 3
    for record in train:
        assert {f"{k}{s}" for k in ("sup", "sup_peer", "cps") for s in suffixes} | {"lambda", "loss"} <= set(record)
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    assert set(result["summary"]) == rows
    for row in result["summary"].values():
        assert math.isfinite(row["dsc"]) and math.isfinite(row["sens"])


@pytest.mark.parametrize("input_", ["single", "both"])
def test_predict_with_mean_averages_the_pair(input_):
    method = _method(input=input_, predict_with="mean")
    method.eval()
    images = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        out = method.predict(images)
        method.opts.predict_with = "first"
        first = method.predict(images)
        method.opts.predict_with = "mean"
    assert set(out) == set(first)
    assert any(not torch.allclose(out[k], first[k]) for k in out)
    assert all(torch.all((0 <= v) & (v <= 1)) for v in out.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input": "fused"}, "unknown input 'fused'; choose one of: single, both, concat"),
        ({"predict_with": "teacher"}, "unknown predict_with 'teacher'; choose one of: first, mean"),
        ({"lambda": 2.0}, "has no option 'lambda'"),
    ],
)
def test_bad_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        _method(**options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method_name", ["mean-teacher", "ua-mt", "cps"])
def test_concat_input_is_one_unet_on_the_stacked_modalities(method_name):
    """Meng et al.'s input for the single-modal baselines: a plain U-Net whose first layer
    reads both modalities as channels."""
    from workbench.methods import get_method
    from workbench.nets import UNet

    config = tiny_config("unused", method=method_name, options={"input": "concat"})
    method = get_method(method_name)(["t1", "flair"], config)
    assert type(method.net) is UNet
    first = next(m for m in method.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 2
