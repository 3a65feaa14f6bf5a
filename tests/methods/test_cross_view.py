import math

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.losses import feature_discrepancy_loss
from workbench.methods import Batch, get_method
from workbench.methods.cross_view import (
    cutmix,
    heterogeneous_targets,
    largest_component,
    paper_sup_loss,
    partner,
    pseudo_labels,
    random_block_mask,
    zero_block_mask,
)
from workbench.nets import CrossViewPair
from workbench.train import Trainer


def _method(modalities=("t1", "flair"), **options):
    config = tiny_config("unused", method="cross-view", options=options)
    torch.manual_seed(0)
    return get_method("cross-view")(list(modalities), config), config


def _batch(k=4):
    torch.manual_seed(1)
    return Batch(torch.randn(4, 2, 32, 32), (torch.rand(4, 1, 32, 32) > 0.7).float(), torch.randn(k, 2, 32, 32))


# ---------------------------------------------------------------- eq. 1 vs a literal per-item loop
def _dis_literal(f, g):
    """1 + cos(f_k, g_k) for every item k, written out element by element, then the mean."""
    total = 0.0
    for k in range(f.shape[0]):
        a, b = f[k].flatten().tolist(), g[k].flatten().tolist()
        dot = sum(x * y for x, y in zip(a, b))
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
        total += 1.0 + dot / (na * nb)
    return total / f.shape[0]


def _dis_grad_literal(f, g):
    """d/df of the mean over items of f_k.g_k / (|f_k| |g_k|), item by item."""
    grad = torch.zeros_like(f)
    for k in range(f.shape[0]):
        a, b = f[k].flatten(), g[k].flatten()
        na, nb = a.norm(), b.norm()
        grad[k] = ((b / (na * nb) - (a @ b) * a / (na**3 * nb)) / f.shape[0]).view_as(f[k])
    return grad


def test_discrepancy_loss_value_and_gradient_match_the_literal_loop():
    torch.manual_seed(0)
    f = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    loss = feature_discrepancy_loss(f, g)
    assert loss.item() == pytest.approx(_dis_literal(f.detach(), g.detach()), rel=1e-12)
    loss.backward()
    assert torch.allclose(f.grad, _dis_grad_literal(f.detach(), g.detach()), atol=1e-12)
    assert g.grad is None  # stop-gradient: nothing flows into f_(1-i)


def test_discrepancy_sum_moves_each_encoder_only_through_its_own_term():
    torch.manual_seed(0)
    f0 = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    f1 = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    (feature_discrepancy_loss(f0, f1) + feature_discrepancy_loss(f1, f0)).backward()  # L_dis = L_dis,0 + L_dis,1
    assert torch.allclose(f0.grad, _dis_grad_literal(f0.detach(), f1.detach()), atol=1e-12)
    assert torch.allclose(f1.grad, _dis_grad_literal(f1.detach(), f0.detach()), atol=1e-12)
    same = f0.detach().clone()
    assert feature_discrepancy_loss(same, same).item() == pytest.approx(2.0)  # identical features: maximal
    assert feature_discrepancy_loss(same, -same).item() == pytest.approx(0.0)  # opposite: 0, never negative


# ---------------------------------------------------------------- eq. 2 vs a literal per-pixel loop
def test_paper_supervised_loss_is_half_bce_plus_dice_per_pixel():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(2, 1, 3, 3) > 0.5).double()
    bce, inter, s_sum, y_sum, n = 0.0, 0.0, 0.0, 0.0, 0
    for b in range(2):
        for i in range(3):
            for j in range(3):
                s = 1 / (1 + torch.exp(-logits[b, 0, i, j]))
                t = y[b, 0, i, j]
                bce = bce - (t * torch.log(s) + (1 - t) * torch.log(1 - s))
                inter, s_sum, y_sum, n = inter + s * t, s_sum + s, y_sum + t, n + 1
    dice = 1 - (2 * inter + 1e-5) / (s_sum + y_sum + 1e-5)
    literal = (bce / n + dice) / 2
    (g_literal,) = torch.autograd.grad(literal, logits)
    loss = paper_sup_loss(logits, y)
    (g_loss,) = torch.autograd.grad(loss, logits)
    assert loss.item() == pytest.approx(literal.item(), rel=1e-6)
    assert torch.allclose(g_loss.double(), g_literal, atol=1e-6)


# ---------------------------------------------------------------- CutMix (eqs. 5-9)
@pytest.mark.parametrize(
    "h, w, beta, zh, zw",
    [(96, 96, 2 / 3, 64, 64), (64, 64, 2 / 3, 42, 42), (32, 48, 0.5, 16, 24), (160, 160, 2 / 3, 106, 106)],
)
def test_centred_mask_has_the_paper_ratio_and_equal_margins(h, w, beta, zh, zw):
    mask = zero_block_mask((h, w), beta)[0, 0]
    assert mask.shape == (h, w) and set(mask.unique().tolist()) == {0.0, 1.0}
    rows, cols = torch.nonzero(mask == 0, as_tuple=True)
    top, bottom, left, right = rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()
    assert (bottom - top + 1, right - left + 1) == (zh, zw) and int((mask == 0).sum()) == zh * zw  # one block
    assert top == h - 1 - bottom and left == w - 1 - right  # equal margins: centred
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.flip(1))
    assert abs(zh - beta * h) <= 1 and abs(zw - beta * w) <= 1  # side beta H x beta W
    assert abs((mask == 0).float().mean().item() - beta**2) <= beta * (1 / h + 1 / w) + 1 / (h * w)


def test_cutmix_and_heterogeneous_targets_pixel_by_pixel():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 8, 8)
    mask = zero_block_mask((8, 8), 0.5)
    mixed = cutmix(x, partner(x), mask)  # eq. 5 / 8: X_u outside the block, its partner X_v inside
    hat0, hat1 = (torch.rand(3, 1, 8, 8) > 0.5).float(), (torch.rand(3, 1, 8, 8) > 0.5).float()
    targets = heterogeneous_targets(hat0, hat1, mask)
    hat = (hat0, hat1)
    s = 1  # partner of item k is item (k - max(1, 3 // 2)) mod 3
    for k in range(3):
        for r in range(8):
            for c in range(8):
                inside = 2 <= r < 6 and 2 <= c < 6
                src = (k - s) % 3 if inside else k
                assert torch.equal(mixed[k, :, r, c], x[src, :, r, c])
                for i in (0, 1):  # eq. 9: the other subnet's labels of X_p outside, own labels of X_q inside
                    expected = hat[i][(k - s) % 3, 0, r, c] if inside else hat[1 - i][k, 0, r, c]
                    assert targets[i][k, 0, r, c] == expected


def _block(mask):
    """(top, left, height, width) of the zero block of a (1, 1, H, W) mask."""
    rows, cols = torch.nonzero(mask[0, 0] == 0, as_tuple=True)
    top, left = rows.min().item(), cols.min().item()
    return top, left, rows.max().item() - top + 1, cols.max().item() - left + 1


def test_random_mask_moves_at_every_draw_and_covers_the_image():
    torch.manual_seed(0)
    seen, union = set(), torch.zeros(64, 64, dtype=torch.bool)
    for _ in range(3000):  # seeded: a corner pixel is in 1 of the 529 positions
        mask = random_block_mask((64, 64), 2 / 3)
        top, left, zh, zw = _block(mask)
        assert (zh, zw) == (42, 42) and int((mask == 0).sum()) == 42 * 42  # one whole block, always inside
        seen.add((top, left))
        union |= mask[0, 0] == 0
    assert len(seen) > 500  # 23 x 23 = 529 positions: the draws spread over them
    assert union.all()  # every pixel lies in some block
    tops = [t for t, _ in seen]
    assert min(tops) == 0 and max(tops) == 64 - 42  # both extremes reached


def test_step_draws_new_masks_for_labeled_and_unlabeled_batches():
    """The labeled batch's block moves from step to step and differs from the unlabeled one's."""
    method, _ = _method(pretrain_epochs=0)
    method.epoch = 1
    draws = []
    original = random_block_mask

    def recording(*args, **kwargs):
        mask = original(*args, **kwargs)
        draws.append(_block(mask)[:2])
        return mask

    import workbench.methods.cross_view as cv

    cv.random_block_mask, saved = recording, cv.random_block_mask
    try:
        batch = _batch()  # (seeds the RNG itself)
        for step in range(4):
            method.training_step(batch, step=step)
    finally:
        cv.random_block_mask = saved
    assert len(draws) == 8  # labeled, unlabeled at each of 4 steps
    labeled, unlabeled = draws[0::2], draws[1::2]
    assert len(set(labeled)) > 1 and any(a != b for a, b in zip(labeled, unlabeled))


def test_cfl_and_cps_are_eq3_on_unmixed_images():
    """variant cfl: eq. 4 with eq. 3 (each subnet learns the other's argmax on the same images);
    cps: the same without L_dis."""
    for variant, lambda2 in (("cfl", 0.3), ("cps", 0.0)):
        method, _ = _method(variant=variant, lambda1=0.7, lambda2=0.3, pretrain_epochs=0)
        method.eval()
        method.epoch = 1
        batch = _batch()
        losses = method.training_step(batch, step=0)
        expected = 0.0
        for i, m in enumerate(["t1", "flair"]):
            pair = method.nets[m]
            logits, feats = pair.forward_pair(batch.x_l[:, i : i + 1])  # no CutMix
            sup_l = sum(paper_sup_loss(out, batch.y_l) for out in logits)
            dis_l = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])
            logits, feats = pair.forward_pair(batch.x_u[:, i : i + 1])
            tilde = [(torch.sigmoid(out) > 0.5).float() for out in logits]  # argmax, no NMS
            sup_u = paper_sup_loss(logits[0], tilde[1]) + paper_sup_loss(logits[1], tilde[0])
            dis_u = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])
            expected = expected + sup_l + 0.7 * sup_u + lambda2 * (dis_l + dis_u)
        assert torch.allclose(losses["loss"], expected, atol=1e-5), variant


def test_partner_never_pairs_an_image_with_itself():
    for b in (2, 3, 4, 8):
        idx = torch.arange(b)
        assert (partner(idx) != idx).all()


# ---------------------------------------------------------------- pseudo-labels: largest component
def test_largest_component_keeps_the_bigger_blob():
    m = np.zeros((10, 10), dtype=bool)
    m[1:4, 1:4] = True  # 9 pixels
    m[6:8, 6:8] = True  # 4 pixels
    kept = largest_component(m)
    assert kept.sum() == 9 and kept[1:4, 1:4].all() and not kept[6:8, 6:8].any()
    assert not largest_component(np.zeros((5, 5), dtype=bool)).any()  # empty stays empty


def test_largest_component_is_8_connected():
    m = np.zeros((10, 10), dtype=bool)
    m[0:2, 0:3] = True  # a 6-pixel block
    for i in range(7):  # a 7-pixel diagonal: one component only when diagonal neighbours touch
        m[3 + i, 2 + i] = True
    kept = largest_component(m)
    assert kept.sum() == 7 and not kept[0:2, 0:3].any()


def test_pseudo_labels_threshold_then_component_per_slice():
    logits = -torch.ones(2, 1, 8, 8)
    logits[0, 0, 0:3, 0:3] = 2.0  # slice 0: big blob top-left, small bottom-right
    logits[0, 0, 6:8, 6:8] = 2.0
    logits[1, 0, 0:1, 0:1] = 2.0  # slice 1: small top-left, big bottom-right
    logits[1, 0, 4:8, 4:8] = 2.0
    logits[1, 0, 2, 2] = 0.0  # sigmoid 0.5 is not foreground (argmax of two classes at a tie: background)
    out = pseudo_labels(logits)
    assert out.dtype == torch.float32 and out.shape == logits.shape
    assert out[0].sum() == 9 and out[0, 0, 0:3, 0:3].all()
    assert out[1].sum() == 16 and out[1, 0, 4:8, 4:8].all()


# ---------------------------------------------------------------- the step: eqs. 11 and 4
def _mix(x, k_partner, box):
    """CutMix by indexing: each item with its partner's block pasted in (independent of cutmix())."""
    out = x.clone()
    r0, r1, c0, c1 = box
    for k in range(x.shape[0]):
        out[k, :, r0:r1, c0:c1] = x[k_partner[k], :, r0:r1, c0:c1]
    return out


def test_pretraining_is_eq11_and_ignores_unlabeled_data():
    method, _ = _method(lambda2=0.3, cutmix_position="centre")
    method.eval()  # no dropout: recompute exactly
    method.epoch = 1
    batch = _batch()
    losses = method.training_step(batch, step=0)
    assert set(losses) == {"sup_l_t1", "sup_l_flair", "dis_l_t1", "dis_l_flair", "loss"}
    box = (5, 27, 5, 27)  # beta = 2/3 of 32 -> a 22 x 22 centred block
    k_partner = [(k - 2) % 4 for k in range(4)]
    x_l, y_l = _mix(batch.x_l, k_partner, box), _mix(batch.y_l, k_partner, box)
    expected = 0.0
    for i, m in enumerate(["t1", "flair"]):
        logits, feats = method.nets[m].forward_pair(x_l[:, i : i + 1])
        sup = sum(paper_sup_loss(out, y_l) for out in logits)
        dis = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])
        expected = expected + sup + 0.3 * dis
    assert torch.allclose(losses["loss"], expected, atol=1e-5)
    other = Batch(batch.x_l, batch.y_l, torch.randn_like(batch.x_u))
    assert torch.equal(method.training_step(other, step=0)["loss"], losses["loss"])


def test_self_training_is_eq4_with_heterogeneous_pseudo_labels():
    method, _ = _method(lambda1=0.7, lambda2=0.3, pretrain_epochs=1, cutmix_position="centre")
    method.eval()
    method.epoch = 2
    batch = _batch(k=4)
    losses = method.training_step(batch, step=40)
    assert {"sup_u_t1", "dis_u_flair", "pseudo_fg_t1"} <= set(losses)
    box = (5, 27, 5, 27)
    k_partner = [(k - 2) % 4 for k in range(4)]
    x_l, y_l, x_u = (_mix(t, k_partner, box) for t in (batch.x_l, batch.y_l, batch.x_u))
    expected = 0.0
    for i, m in enumerate(["t1", "flair"]):
        pair = method.nets[m]
        logits, feats = pair.forward_pair(x_l[:, i : i + 1])
        sup_l = sum(paper_sup_loss(out, y_l) for out in logits)
        dis_l = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])
        hat = [pseudo_labels(out) for out in pair.forward_pair(batch.x_u[:, i : i + 1])[0]]
        targets = []
        for j in (0, 1):  # eq. 9 by indexing: other subnet's labels outside, own labels of the partner inside
            t = hat[1 - j].clone()
            for k in range(4):
                t[k, :, 5:27, 5:27] = hat[j][k_partner[k], :, 5:27, 5:27]
            targets.append(t)
        logits, feats = pair.forward_pair(x_u[:, i : i + 1])
        sup_u = paper_sup_loss(logits[0], targets[0]) + paper_sup_loss(logits[1], targets[1])
        dis_u = feature_discrepancy_loss(feats[0], feats[1]) + feature_discrepancy_loss(feats[1], feats[0])
        expected = expected + sup_l + 0.7 * sup_u + 0.3 * (dis_l + dis_u)
        assert torch.allclose(losses[f"sup_u_{m}"], sup_u, atol=1e-5)
    assert torch.allclose(losses["loss"], expected, atol=1e-5)


def test_self_training_loss_trains_both_subnets_of_every_pair():
    method, _ = _method(pretrain_epochs=0)
    method.epoch = 1
    losses = method.training_step(_batch(), step=0)
    losses["loss"].backward()
    for m in ("t1", "flair"):
        for net in method.nets[m].subnets:
            assert sum(p.grad.abs().sum() for p in net.parameters() if p.grad is not None) > 0


def test_the_two_subnets_start_apart_and_the_discrepancy_pushes_their_views_apart():
    method, _ = _method()
    a, b = method.nets["t1"].subnets
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    torch.manual_seed(0)
    pair = CrossViewPair(1, 1, base_channels=4)
    x = torch.randn(4, 1, 32, 32)

    def discrepancy():
        torch.manual_seed(1)  # same dropout masks for both measurements
        _, (f0, f1) = pair.forward_pair(x)
        return feature_discrepancy_loss(f0, f1) + feature_discrepancy_loss(f1, f0)

    before = discrepancy().item()
    opt = torch.optim.Adam(pair.parameters(), lr=1e-2)
    for _ in range(10):
        opt.zero_grad()
        discrepancy().backward()
        opt.step()
    assert discrepancy().item() < before - 0.3  # 2 + cos_0 + cos_1 went down: the encoders disagree more


def test_predict_keys_for_both_input_options():
    method, _ = _method()
    method.eval()
    x = torch.randn(2, 2, 32, 32)
    probs = method.predict(x)
    assert set(probs) == {"t1", "flair"}
    assert torch.allclose(probs["flair"], method.nets["flair"].probabilities(x[:, 1:2]))
    feats = method.features(x)
    assert feats["t1"]["bottleneck"].shape == (2, 128, 2, 2)  # both subnets' 16 * base channels
    fused, _ = _method(input="both")
    fused.eval()
    probs = fused.predict(x)
    assert set(probs) == {"fused", "t1 only", "flair only"}
    only = x.clone()
    only[:, 0] = 0
    assert torch.allclose(probs["flair only"], fused.nets["fused"].probabilities(only))
    assert set(fused.features(x)) == {"fused"}


def test_bad_options_are_one_line_errors():
    cases = [
        ({"input": "stacked"}, "unknown input 'stacked'; choose one of: single, both"),
        ({"lambda3": 1}, "has no option 'lambda3'"),
        ({"beta": 1.5}, "beta=1.5"),
        ({"lambda1": -1.0}, "weights must be >= 0"),
        ({"pretrain_epochs": 9}, "pretrain_epochs=9: must be <= epochs=3"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            _method(**options)
        assert "\n" not in str(err.value)


# ---------------------------------------------------------------- through the training loop
def _config(data, **options):
    """3 epochs (1 pre-training, 2 self-training); validation on tumour slices only, to keep it quick."""
    return tiny_config(
        data,
        method="cross-view",
        epochs=3,
        unlabeled_batch_size=2,
        test_slices="tumour",
        options={"pretrain_epochs": 1, **options},
    )


def test_run_switches_stage_at_the_right_epoch(brats_dir, tmp_path):
    trainer = Trainer(_config(brats_dir), tmp_path / "run", quiet=True)
    result = trainer.fit()
    trainer.close()
    stages = read_events(tmp_path / "run", "stage")
    assert [(e["stage"], e["epoch"], e["step"]) for e in stages] == [("pre-training", 1, 0), ("self-training", 2, 2)]
    train = read_events(tmp_path / "run", "train")
    assert ["sup_u_t1" in e for e in train] == [False, True, True]
    assert {row["modality"] for row in result["per_patient"]} == {"t1", "flair"}
    assert all(math.isfinite(e["loss"]) for e in train)


def test_default_pretraining_is_a_quarter_of_the_epochs():
    method, config = _method()
    assert method.pretrain_epochs == round(config.epochs / 4) == 1
    assert method.stage(1) == "pre-training" and method.stage(2) == "self-training"


def test_both_input_runs_end_to_end(hecktor_dir, tmp_path):
    config = _config(hecktor_dir, input="both")
    config.epochs = 2
    trainer = Trainer(config, tmp_path / "both", quiet=True)
    result = trainer.fit()
    trainer.close()
    assert {row["modality"] for row in result["per_patient"]} == {"fused", "ct only", "pet only"}
    assert "sup_u_fused" in read_events(tmp_path / "both", "train")[-1]


def test_resume_at_the_stage_switch_equals_an_uninterrupted_run(brats_dir, tmp_path):
    full = Trainer(_config(brats_dir), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    first = Trainer(_config(brats_dir), tmp_path / "cut", quiet=True)
    first.fit(stop_after=1)  # the last pre-training epoch; self-training starts after the resume
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    result = resumed.fit()
    resumed.close()
    assert result["per_patient"] == expected["per_patient"]
    for name, value in full.method.state_dict().items():
        assert torch.equal(value, resumed.method.state_dict()[name]), name
    assert read_events(tmp_path / "full", "stage") == read_events(tmp_path / "cut", "stage")
    assert read_events(tmp_path / "full", "train") == read_events(tmp_path / "cut", "train")


def test_3d_block_mask_and_26_connected_components():
    torch.manual_seed(0)
    mask = random_block_mask((16, 12, 8), 0.5)
    assert mask.shape == (1, 1, 16, 12, 8) and int((mask == 0).sum()) == 8 * 6 * 4
    centred = zero_block_mask((16, 12, 8), 0.5)[0, 0]
    assert torch.equal(centred, centred.flip(0)) and torch.equal(centred, centred.flip(2))
    m = np.zeros((6, 6, 6), dtype=bool)
    m[0, 0, 0] = m[1, 1, 1] = m[2, 2, 2] = True  # a corner-touching diagonal: one 26-connected component
    m[5, 5, 0] = m[5, 4, 0] = True
    assert largest_component(m).sum() == 3
