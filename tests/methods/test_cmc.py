import math

import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.methods import Batch, get_method
from workbench.methods.cmc import cac_loss, csc_loss, ramp_down, ramp_up
from workbench.nets.cmc import CMCNet
from workbench.train import Trainer

MODS = ["t1", "flair"]


def _method(config_overrides=None, **options):
    config = tiny_config("unused", method="cmc", options=options, **(config_overrides or {}))
    torch.manual_seed(0)
    return get_method("cmc")(MODS, config), config


def _batch(k=3):
    torch.manual_seed(1)
    return Batch(torch.randn(4, 2, 32, 32), (torch.rand(4, 1, 32, 32) > 0.7).float(), torch.randn(k, 2, 32, 32))


# ---------------------------------------------------------------- literal oracles (loops over scalars)
def _cos(u, v):
    dot = sum(u[i] * v[i] for i in range(len(u)))
    return dot / (torch.sqrt(sum(x * x for x in u)) * torch.sqrt(sum(y * y for y in v)))


def _dice(u, v, eps=1e-6):
    return 2 * sum(u[i] * v[i] for i in range(len(u))) / (sum(u) + sum(v) + eps)


def _info_nce(sim, n, literal):
    """mean_i -log exp(sim(i, i)) / sum_i' exp(sim(i, i')) -- or / sum_i' exp(sim(i', i')) if literal."""
    total = 0
    for i in range(n):
        if literal:
            denominator = sum(torch.exp(sim(k, k)) for k in range(n))
        else:
            denominator = sum(torch.exp(sim(i, k)) for k in range(n))
        total = total - torch.log(torch.exp(sim(i, i)) / denominator)
    return total / n


def _literal_csc(fa, fb, temperature=1.0, literal=False):
    """Eq. 1 slice by slice, channel by channel; channel maps flattened to lists of scalars."""
    total = 0
    for s in range(fa.shape[0]):
        a = [list(fa[s, c].flatten()) for c in range(fa.shape[1])]
        b = [list(fb[s, c].flatten()) for c in range(fb.shape[1])]
        total = total + _info_nce(lambda i, k: _cos(a[i], b[k]) / temperature, fa.shape[1], literal)  # noqa: B023
    return total / fa.shape[0]


def _literal_cac(pa, pb, literal=False):
    """Eq. 3 pair by pair, with Sim_Dice written out."""
    a = [list(pa[j].flatten()) for j in range(pa.shape[0])]
    b = [list(pb[j].flatten()) for j in range(pb.shape[0])]
    return _info_nce(lambda i, k: _dice(a[i], b[k]), pa.shape[0], literal)


@pytest.mark.parametrize("literal", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_csc_matches_the_literal_loop_values_and_gradients(literal, temperature):
    torch.manual_seed(0)
    fa = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    fb = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    denominator = "literal" if literal else "cross"
    fast = csc_loss(fa, fb, temperature, denominator)
    slow = _literal_csc(fa, fb, temperature, literal)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-6)
    g_fast = torch.autograd.grad(fast, (fa, fb))
    g_slow = torch.autograd.grad(slow, (fa, fb))
    for f, s in zip(g_fast, g_slow):
        assert f.abs().sum() > 0 and torch.allclose(f.double(), s, atol=1e-6)  # both encoders' features move


@pytest.mark.parametrize("literal", [False, True])
def test_cac_matches_the_literal_loop_values_and_gradients(literal):
    torch.manual_seed(1)
    pa = torch.rand(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    pb = torch.rand(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    fast = cac_loss(pa, pb, "literal" if literal else "cross")
    slow = _literal_cac(pa, pb, literal)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-6)
    g_fast = torch.autograd.grad(fast, (pa, pb))
    g_slow = torch.autograd.grad(slow, (pa, pb))
    for f, s in zip(g_fast, g_slow):
        assert f.abs().sum() > 0 and torch.allclose(f.double(), s, atol=1e-6)  # no stop-gradient in eq. 3


def test_the_printed_denominators_cannot_tell_aligned_from_opposite():
    torch.manual_seed(2)
    f = torch.randn(2, 5, 3, 3)
    # literal eq. 1: every matched similarity equal (all +1 or all -1) gives its minimum log C either way
    assert csc_loss(f, f, denominator="literal").item() == pytest.approx(math.log(5), rel=1e-5)
    assert csc_loss(f, -f, denominator="literal").item() == pytest.approx(math.log(5), rel=1e-5)
    # our reading prefers aligned channels
    assert csc_loss(f, f) < csc_loss(f, -f)
    maps = (torch.rand(4, 1, 6, 6) > 0.6).float()
    assert cac_loss(maps, maps) < cac_loss(maps, maps.roll(1, 0))  # matched anatomy beats shuffled
    with pytest.raises(ValueError, match="K >= 2"):
        cac_loss(maps[:1], maps[:1])


def test_ramps_are_the_printed_formulas():
    for t in (0.0, 0.3, 1.7, 4.0):
        assert ramp_up(t, 4.0) == pytest.approx(0.1 * math.exp(-5 * (1 - t / 4.0)))
        assert ramp_down(t, 4.0) == pytest.approx(0.1 * math.exp(-5 * t / 4.0))
    assert ramp_up(0, 4.0) == pytest.approx(0.1 * math.exp(-5)) and ramp_up(9, 4.0) == pytest.approx(0.1)
    assert ramp_down(0, 4.0) == pytest.approx(0.1) and ramp_down(9, 4.0) == pytest.approx(0.1 * math.exp(-5))
    method, config = _method()  # t in fractional epochs, t_max = the run's epochs (3 x 2 steps)
    assert (config.epochs, config.steps_per_epoch) == (3, 2)
    assert method.alpha(3) == pytest.approx(0.1 * math.exp(-5 * (1 - 1.5 / 3)))
    assert method.beta(3) == pytest.approx(0.1 * math.exp(-5 * 1.5 / 3))
    scaled, _ = _method(alpha=0.2, beta=0.3, ramp_epochs=1.0)
    assert scaled.alpha(2) == pytest.approx(0.2) and scaled.beta(2) == pytest.approx(0.3 * math.exp(-5))


# ---------------------------------------------------------------- where each loss's gradient goes
def _grad(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_csc_moves_both_encoders_and_nothing_after_them():
    method, _ = _method()
    losses = method.training_step(_batch(), step=0)
    assert losses["csc"].requires_grad  # not computed under no_grad
    losses["csc"].backward()
    net = method.net
    assert _grad(net.encoders[0]) > 0 and _grad(net.encoders[1]) > 0  # min over E^a, E^b (eq. 1)
    assert _grad(net.encoders[0].levels[0]) > 0  # all the way down
    assert _grad(net.mia) == 0 and _grad(net.decoders) == 0  # F_ds is the encoders' output


def test_cac_moves_encoders_mia_and_decoders_of_both_modalities():
    method, _ = _method()
    losses = method.training_step(_batch(), step=0)
    assert losses["cac"].requires_grad
    losses["cac"].backward()
    net = method.net
    for module in (net.encoders[0], net.encoders[1], net.decoders[0], net.decoders[1], net.mia):
        assert _grad(module) > 0  # min over E^a, E^b, D^a, D^b (eq. 3), no stop-gradient


def test_cac_without_mia_still_reaches_both_branches():
    method, _ = _method(mia=False)
    method.training_step(_batch(), step=0)["cac"].backward()
    assert all(_grad(m) > 0 for m in (*method.net.encoders, *method.net.decoders))


def test_the_unsupervised_terms_reach_the_total_loss_gradient():
    method, _ = _method()
    losses = method.training_step(_batch(), step=0)
    params = list(method.net.encoders[1].parameters())
    g_total = torch.autograd.grad(losses["loss"], params, retain_graph=True)
    sup = losses["sup_t1"] + losses["sup_flair"]
    g_sup = torch.autograd.grad(sup, params, retain_graph=True)
    g_csc = torch.autograd.grad(losses["csc"], params, retain_graph=True)
    g_cac = torch.autograd.grad(losses["cac"], params)
    alpha, beta = losses["alpha"].item(), losses["beta"].item()
    for t, s, c, a in zip(g_total, g_sup, g_csc, g_cac):
        assert torch.allclose(t, s + alpha * c + beta * a, atol=1e-6)
    assert any(not torch.allclose(t, s) for t, s in zip(g_total, g_sup))


def test_total_is_sup_plus_alpha_csc_plus_beta_cac_recomputed():
    method, config = _method()
    method.eval()  # BatchNorm on running statistics: the passes can be recomputed exactly
    batch = _batch()
    step = 4
    losses = method.training_step(batch, step=step)
    assert set(losses) == {"sup_t1", "sup_flair", "csc", "alpha", "cac", "beta", "loss"}
    out_l, out_u = method.net.forward_with_features(batch.x_l), method.net.forward_with_features(batch.x_u)
    sup = sum(
        method.sup_loss(z, batch.y_l, method.opts.sup_weights) for z in out_l.logits
    )  # eq. 2, CE + Dice per modality
    csc = _literal_csc(torch.cat([out_l.ds[0], out_u.ds[0]]).double(), torch.cat([out_l.ds[1], out_u.ds[1]]).double())
    cac = _literal_cac(*(torch.sigmoid(z).double() for z in out_u.logits))
    t = step / config.steps_per_epoch
    alpha, beta = 0.1 * math.exp(-5 * (1 - t / config.epochs)), 0.1 * math.exp(-5 * t / config.epochs)
    assert losses["csc"].item() == pytest.approx(csc.item(), rel=1e-5)
    assert losses["cac"].item() == pytest.approx(cac.item(), rel=1e-5)
    assert losses["loss"].item() == pytest.approx((sup + alpha * csc + beta * cac).item(), rel=1e-5)


def test_supervised_weights_paper_and_run():
    method, _ = _method()
    run, config = _method(sup_weights="run")
    torch.manual_seed(2)
    logits, y = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    from workbench.losses import bce_loss, soft_dice_loss

    dice = soft_dice_loss(torch.sigmoid(logits), y)
    assert torch.allclose(method.sup_loss(logits, y, method.opts.sup_weights), bce_loss(logits, y) + dice)
    assert torch.allclose(run.sup_loss(logits, y, run.opts.sup_weights), 10 * bce_loss(logits, y) + 7 * dice)


@pytest.mark.parametrize(
    "flags",
    [
        dict(specific_encoders=False, mia=False, csc=False, cac=False),
        dict(mia=False, csc=False, cac=False),
        dict(cac=False),
        {},
    ],
)
def test_table2_rows_train_one_step(flags):
    method, _ = _method(**flags)
    losses = method.training_step(_batch(), step=0)
    assert torch.isfinite(losses["loss"])
    assert ("csc" in losses) == flags.get("csc", True) and ("cac" in losses) == flags.get("cac", True)
    assert len(method.net.encoders) == (2 if flags.get("specific_encoders", True) else 1)
    assert (method.net.mia is not None) == flags.get("mia", True)
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


# ---------------------------------------------------------------- options and encoder weights
def test_encoder_weights_are_loaded_from_a_file(tmp_path):
    torch.manual_seed(3)
    source = CMCNet(1, 4)
    for p in source.encoders.parameters():
        p.data.normal_()
    path = tmp_path / "enc.pt"
    torch.save(source.encoders[0].state_dict(), path)
    method, _ = _method(encoder_weights=str(path))
    for enc in method.net.encoders:
        assert torch.equal(enc.levels[2].block[0].weight, source.encoders[0].levels[2].block[0].weight)
    scratch, _ = _method()
    assert not torch.equal(
        scratch.net.encoders[0].levels[2].block[0].weight, method.net.encoders[0].levels[2].block[0].weight
    )


def test_bad_encoder_weights_are_one_clear_line(tmp_path):
    missing = tmp_path / "nope" / "sam_med3d.pth"
    with pytest.raises(ConfigError, match="option encoder_weights: no such file") as err:
        _method(encoder_weights=str(missing))
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    wide = tmp_path / "wide.pt"
    torch.save(CMCNet(1, 8).encoders.state_dict(), wide)
    with pytest.raises(
        ConfigError,
        match=r"0.levels.0.block.0.weight has shape \(8, 1, 3, 3\) but the encoder "
        r"needs \(4, 1, 3, 3\)",
    ) as err:
        _method(encoder_weights=str(wide))
    assert str(wide) in str(err.value) and "\n" not in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot read .*junk.pt"):
        _method(encoder_weights=str(junk))
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ConfigError, match="holds a list, not a state dict"):
        _method(encoder_weights=str(listed))


def test_bad_options_are_clear():
    with pytest.raises(ConfigError, match="has no option 'gamma'") as err:
        _method(gamma=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown denominator 'x'"):
        _method(denominator="x")
    with pytest.raises(ConfigError, match="csc_temperature=0.0"):
        _method(csc_temperature=0.0)
    with pytest.raises(ConfigError, match="needs unlabeled_batch_size >= 2"):
        _method({"unlabeled_batch_size": 1})
    _method({"unlabeled_batch_size": 1}, cac=False)  # without CAC one unlabeled slice is enough
    with pytest.raises(ConfigError, match="needs exactly 2 modalities"):
        get_method("cmc")(["t1"], tiny_config("unused", method="cmc"))


# ---------------------------------------------------------------- through the loop
def _config(brats_dir, **overrides):
    return tiny_config(brats_dir, **{"method": "cmc", "epochs": 2, "unlabeled_batch_size": 2, **overrides})


def test_tiny_run_end_to_end_and_exact_resume(brats_dir, tmp_path):
    full = Trainer(_config(brats_dir), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    train = read_events(tmp_path / "full", "train")
    assert len(train) == 2 and all(math.isfinite(r[k]) for r in train for k in ("loss", "csc", "cac", "sup_t1"))
    assert train[0]["alpha"] < train[1]["alpha"] and train[0]["beta"] > train[1]["beta"]  # ramp-up / ramp-down
    assert set(expected["summary"]) == {"t1", "flair"}  # one row per modality
    assert all(0.0 <= r["dsc"] <= 1.0 for r in expected["per_patient"])

    first = Trainer(_config(brats_dir), tmp_path / "cut", quiet=True)
    assert first.fit(stop_after=1) is None
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    result = resumed.fit()
    resumed.close()
    assert result["per_patient"] == expected["per_patient"]
    for name, value in full.method.state_dict().items():
        assert torch.equal(value, resumed.method.state_dict()[name]), name
    assert read_events(tmp_path / "full", "train") == read_events(tmp_path / "cut", "train")


def test_a_run_starts_from_the_encoders_of_an_earlier_run(brats_dir, tmp_path):
    first = Trainer(_config(brats_dir, epochs=1), tmp_path / "first", quiet=True)
    first.fit()
    first.close()
    checkpoint = torch.load(tmp_path / "first" / "checkpoint.pt", map_location="cpu", weights_only=True)
    torch.save(checkpoint["method"], tmp_path / "method.pt")  # net.encoders.* among the net's other keys
    config = _config(brats_dir, epochs=1, options={"encoder_weights": str(tmp_path / "method.pt")})
    second = Trainer(config, tmp_path / "second", quiet=True)
    for i in range(2):
        assert torch.equal(
            second.method.net.encoders[i].levels[4].block[0].weight,
            first.method.net.encoders[i].levels[4].block[0].weight,
        )
    assert second.fit() is not None
    second.close()
