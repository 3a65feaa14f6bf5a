import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.losses import asc_loss, mse_consistency, supervised_loss
from workbench.methods import Batch, get_method
from workbench.methods.semi_cml import VARIANTS


def _method(variant="sup+mse+asc", **options):
    config = tiny_config("unused", method="semi-cml", options={"variant": variant, **options})
    torch.manual_seed(0)
    return get_method("semi-cml")(["t1", "flair"], config), config


def _batch(k=3):
    torch.manual_seed(1)
    return Batch(torch.randn(4, 2, 32, 32), (torch.rand(4, 1, 32, 32) > 0.7).float(), torch.randn(k, 2, 32, 32))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_table3_variant_trains_one_step(variant):
    method, _ = _method(variant)
    losses = method.training_step(_batch(), step=0)
    assert torch.isfinite(losses["loss"])
    expected = {"sup_t1", "sup_flair", "loss"}
    if "mse" in variant:
        expected |= {"mse", "w1"}
    if "asc" in variant:
        expected.add("asc")
    if "nce" in variant:
        expected.add("nce")
    assert set(losses) == expected
    losses["loss"].backward()


def test_total_is_eq11_and_terms_recompute():
    method, config = _method(w1=2.0, w2=0.7, rampup_epochs=0.0)
    method.eval()  # no dropout: recompute the terms exactly
    batch = _batch()
    losses = method.training_step(batch, step=0)
    n = batch.x_l.shape[0]
    both = torch.cat([batch.x_l, batch.x_u])
    logits = {m: method.nets[m](both[:, i : i + 1]) for i, m in enumerate(["t1", "flair"])}
    sup = sum(supervised_loss(logits[m][:n], batch.y_l) for m in logits)
    pa, pb = (torch.sigmoid(logits[m][n:]) for m in ("t1", "flair"))
    expected = sup + 2.0 * mse_consistency(pa, pb) + 0.7 * asc_loss(pa, pb)
    assert torch.allclose(losses["loss"], expected, atol=1e-5)


@pytest.mark.parametrize("term", ["mse", "asc", "nce"])
def test_unsupervised_terms_move_both_networks(term):
    method, _ = _method({"mse": "sup+mse", "asc": "sup+asc", "nce": "sup+nce"}[term])
    losses = method.training_step(_batch(), step=100)
    losses[term].backward()
    for m in ("t1", "flair"):
        grads = [p.grad for p in method.nets[m].parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, m


def test_nce_star_uses_projection_heads():
    method, _ = _method("sup+mse+nce*")
    losses = method.training_step(_batch(), step=0)
    losses["nce"].backward()
    assert method.heads["t1"].mlp[0].weight.grad.abs().sum() > 0


def test_nce_star_head_reads_the_prediction_map_and_trains_the_decoder():
    """Section 4.5.1: the head encodes the prediction map, so NCE* reaches the decoder's output
    layer (a head on the bottleneck would send it no gradient)."""
    method, _ = _method("sup+mse+nce*")
    batch = _batch()
    with torch.no_grad():
        probs = torch.sigmoid(method.forward_modality("t1", batch.x_u)[0])
    emb = method.heads["t1"](probs)
    assert emb.shape == (batch.x_u.shape[0], method.opts.projection_dim)
    losses = method.training_step(batch, step=0)
    method.zero_grad()
    losses["nce"].backward()
    assert method.nets["t1"].decoder.head.weight.grad.abs().sum() > 0


def test_asc_matrix_logged_once_per_epoch():
    method, _ = _method()
    events = []
    method.bind_events(lambda event, **fields: events.append((event, fields)))
    for epoch in (1, 1, 2):
        method.epoch = epoch
        method.training_step(_batch(k=4), step=0)
    matrices = [f for e, f in events if e == "asc_matrix"]
    assert len(matrices) == 2 and tuple(matrices[0]["matrix"].shape) == (8, 8)


def test_bad_options_are_clear():
    with pytest.raises(ConfigError, match="unknown variant 'sup\\+foo'"):
        _method("sup+foo")
    with pytest.raises(ConfigError, match="has no option 'w3'"):
        _method(w3=1)
    with pytest.raises(ConfigError, match="option w2='a': expected a number"):
        _method(w2="a")
    with pytest.raises(ConfigError, match="needs exactly 2 modalities"):
        get_method("semi-cml")(["t1"], tiny_config("unused", method="semi-cml"))


def test_separate_forward_passes_give_the_same_eval_mode_losses():
    joint, _ = _method(rampup_epochs=0.0, joint_forward=True)
    split, _ = _method(rampup_epochs=0.0)
    joint.eval(), split.eval()  # eval-mode BatchNorm: the two ways must agree exactly
    batch = _batch()
    a, b = joint.training_step(batch, 0), split.training_step(batch, 0)
    assert torch.allclose(a["loss"], b["loss"], atol=1e-5)


def test_asc_event_counts_the_predicted_tumour_of_each_logged_prediction():
    """For the figures: per matrix row, the pixels with p > 0.5 of that prediction (no labels)."""
    method, _ = _method()
    method.eval()  # deterministic forward passes, so the counts can be recomputed here
    events = []
    method.bind_events(lambda event, **fields: events.append((event, fields)))
    batch = _batch(k=4)
    method.epoch = 1
    method.training_step(batch, step=0)
    [fields] = [f for e, f in events if e == "asc_matrix"]
    with torch.no_grad():
        probs = [torch.sigmoid(method.nets[m](batch.x_u[:, i : i + 1])) for i, m in enumerate(("t1", "flair"))]
    expected = (torch.cat(probs) > 0.5).flatten(1).sum(1)
    assert fields["predicted_tumour_pixels"].tolist() == expected.tolist()
    assert fields["slice_pixels"] == 32 * 32 and len(expected) == fields["matrix"].shape[0] == 8
