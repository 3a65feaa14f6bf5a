import contextlib
import dataclasses
import io
import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from workbench.cli import main
from workbench.data.slices import load_splits, split_patients
from workbench.errors import ConfigError, DataError
from workbench.events import read_events
from workbench.methods import Batch, get_method
from workbench.methods.multi_condos import (
    KIND,
    PRETRAIN_DEFAULTS,
    MultiConDoS,
    MultiConDoSOptions,
    Pretraining,
    contrastive_pair_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    multimodal_contrastive_loss,
    read_pretraining,
    read_samples,
    reconstruction_loss,
    transfer_to_unet,
    translation_loss,
)
from workbench.nets.dsgan import rows_prefixes, shared_rows
from workbench.nets.unet import UNet
from workbench.train import Trainer, TrainingInterrupted, _distinct_batches

MODS = ["t1", "flair"]
#: a tiny pre-training: what `workbench pretrain --epochs 2 --steps-per-epoch 1 --batch-size 4
#: --base-channels 4 --size 32 --set options.samples=2` runs
TINY = {"epochs": 2, "steps_per_epoch": 1, "batch_size": 4, "base_channels": 4, "size": 32}


def _pretrain_config(data, options=None, **overrides):
    """The TrainConfig of a tiny pre-training (PRETRAIN_DEFAULTS, as `workbench pretrain`)."""
    values = {**PRETRAIN_DEFAULTS, **TINY, "options": {"samples": 2, **(options or {})}, **overrides}
    return tiny_config(data, **values)


def _method(options=None, modalities=MODS, **overrides) -> MultiConDoS:
    """A tiny MultiConDoS built as the loop builds it (no data is read)."""
    return MultiConDoS(list(modalities), _pretrain_config("unused", options, **overrides))


def _batch(images: torch.Tensor) -> Batch:
    return Batch(images, None)


def _grads(loss_fn, *tensors):
    """Value and gradients of ``loss_fn`` at float64 copies of ``tensors``."""
    leaves = [t.detach().double().clone().requires_grad_(True) for t in tensors]
    value = loss_fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


# ---------------------------------------------------------------- literal oracles (scalar loops)
def _literal_l(anchor: list, candidates: list, i: int, t: float):
    """Eq. 2 for anchor ``anchor`` whose positive is ``candidates[i]``, the others negatives."""

    def sim(u, v):
        dot = sum(a * b for a, b in zip(u, v))
        return dot / (torch.sqrt(sum(a * a for a in u)) * torch.sqrt(sum(b * b for b in v)))

    pos = torch.exp(sim(anchor, candidates[i]) / t)
    neg = sum(torch.exp(sim(anchor, z) / t) for j, z in enumerate(candidates) if j != i)
    return -torch.log(pos / (pos + neg))


def _literal_pair_loss(fa: torch.Tensor, fb: torch.Tensor, t: float):
    """One half of eq. 3: 1/N sum_i [l(a_i, b_i) + l(b_i, a_i)], element by element."""
    a = [list(row) for row in fa.flatten(1)]
    b = [list(row) for row in fb.flatten(1)]
    n = len(a)
    return sum(_literal_l(a[i], b, i, t) + _literal_l(b[i], a, i, t) for i in range(n)) / n


def _literal_bce_logit(z, target: int):
    p = 1 / (1 + torch.exp(-z))
    return -torch.log(p) if target == 1 else -torch.log(1 - p)


def _literal_mean(values):
    values = list(values)
    return sum(values) / len(values)


# ---------------------------------------------------------------- losses against the oracles
def test_contrastive_loss_matches_the_literal_equations():
    torch.manual_seed(0)
    fa, fb, fap, fbp = (torch.randn(3, 2, 2, 2) for _ in range(4))
    value, grads = _grads(lambda *f: contrastive_pair_loss(f[0], f[1], 0.1), fa, fb)
    literal, literal_grads = _grads(lambda a, b: _literal_pair_loss(a, b, 0.1), fa, fb)
    assert value.item() == pytest.approx(literal.item(), rel=1e-10)
    for g, lg in zip(grads, literal_grads):
        torch.testing.assert_close(g, lg, rtol=1e-9, atol=1e-12)
    # eq. 3 = real pairs + translated pairs
    full, _ = _grads(lambda *f: multimodal_contrastive_loss(*f, temperature=0.1), fa, fb, fap, fbp)
    lit_full, _ = _grads(
        lambda a, b, c, d: _literal_pair_loss(a, b, 0.1) + _literal_pair_loss(c, d, 0.1), fa, fb, fap, fbp
    )
    assert full.item() == pytest.approx(lit_full.item(), rel=1e-10)
    assert torch.autograd.gradcheck(
        lambda a, b: contrastive_pair_loss(a, b, 0.5), [f.double().requires_grad_(True) for f in (fa, fb)]
    )


def test_contrastive_loss_limits():
    f = torch.randn(1, 5)
    assert contrastive_pair_loss(f, torch.randn(1, 5)).item() == pytest.approx(0.0, abs=1e-7)  # N = 1: no negatives
    n = 4  # all features equal: every candidate ties, each l = log N
    same = torch.ones(n, 3)
    assert contrastive_pair_loss(same, same).item() == pytest.approx(2 * math.log(n), rel=1e-6)
    with pytest.raises(ValueError, match="paired features"):
        contrastive_pair_loss(torch.randn(2, 3), torch.randn(3, 3))


def test_gan_losses_match_eq_4_written_out():
    torch.manual_seed(1)
    fy, fx, ry, rx = (torch.randn(2, 1, 2, 2) for _ in range(4))

    def lit_g(fy, fx):  # non-saturating: -E log Dis_Y(G_a(x)) - E log Dis_X(G_b(y))
        return _literal_mean(_literal_bce_logit(z, 1) for z in fy.flatten()) + _literal_mean(
            _literal_bce_logit(z, 1) for z in fx.flatten()
        )

    def lit_d(ry, fy, rx, fx):  # -eq. 4 halved per discriminator
        def term(r, f):
            real = _literal_mean(_literal_bce_logit(z, 1) for z in r.flatten())
            fake = _literal_mean(_literal_bce_logit(z, 0) for z in f.flatten())
            return 0.5 * (real + fake)

        return term(ry, fy) + term(rx, fx)

    for fn, lit, args in ((gan_generator_loss, lit_g, (fy, fx)), (gan_discriminator_loss, lit_d, (ry, fy, rx, fx))):
        value, grads = _grads(fn, *args)
        literal, literal_grads = _grads(lit, *args)
        assert value.item() == pytest.approx(literal.item(), rel=1e-10)
        for g, lg in zip(grads, literal_grads):
            torch.testing.assert_close(g, lg, rtol=1e-9, atol=1e-12)
    # eq. 4 itself: D's loss is -1/2 (E log D(real) + E log(1 - D(fake))) per discriminator
    d = torch.sigmoid
    eq4 = torch.log(d(ry)).mean() + torch.log(1 - d(fy)).mean() + torch.log(d(rx)).mean() + torch.log(1 - d(fx)).mean()
    assert gan_discriminator_loss(ry, fy, rx, fx).item() == pytest.approx(-0.5 * eq4.item(), rel=1e-5)


def test_translation_and_reconstruction_losses_match_eqs_5_and_6():
    torch.manual_seed(2)
    a, b, c, e = (torch.randn(2, 1, 3, 3) for _ in range(4))

    def lit(p, q, r, s):  # E ||p - q||_1 + E ||r - s||_1, means over pixels
        return _literal_mean(abs(u - v) for u, v in zip(p.flatten(), q.flatten())) + _literal_mean(
            abs(u - v) for u, v in zip(r.flatten(), s.flatten())
        )

    for fn in (translation_loss, reconstruction_loss):
        value, grads = _grads(fn, a, b, c, e)
        literal, literal_grads = _grads(lit, a, b, c, e)
        assert value.item() == pytest.approx(literal.item(), rel=1e-10)
        for g, lg in zip(grads, literal_grads):
            torch.testing.assert_close(g, lg)


# ---------------------------------------------------------------- the model
LOSSES = {"generator", "discriminator", "gan", "translation", "reconstruction", "contrastive", "d_real", "d_fake"}


def test_paper_hyper_parameters_are_the_defaults():
    opts = MultiConDoSOptions()
    assert (opts.gamma, opts.beta, opts.lam, opts.temperature) == (10.0, 1.0, 0.1, 0.1)  # section V
    assert opts.shared_layers == 1 and opts.share and opts.decoder_layers == 3  # Fig. 6, section IV-D
    assert opts.betas == [0.5, 0.999] and opts.samples == 4  # Pix2Pix's betas (the paper gives none)
    # what `workbench pretrain` starts from: Adam at 2e-4 (section V), constant (no schedule is mentioned)
    assert PRETRAIN_DEFAULTS == {
        "method": "multi-condos",
        "lr": 2e-4,
        "weight_decay": 0.0,
        "warmup_epochs": 0,
        "milestones": [],
        "epochs": 10,
    }
    assert get_method("multi-condos") is MultiConDoS
    assert MultiConDoS.training_data == "images" and not MultiConDoS.segments
    assert _method(options={}).adam_betas() == (0.5, 0.999)


def test_training_step_is_eq_7_on_the_right_images():
    torch.manual_seed(0)
    model = _method()
    images = torch.randn(3, 2, 32, 32)
    torch.manual_seed(5)
    losses = model.training_step(_batch(images), 0)
    assert set(losses) == LOSSES
    parts = losses["gan"] + 10 * losses["translation"] + 1 * losses["reconstruction"] + 0.1 * losses["contrastive"]
    assert losses["generator"].item() == pytest.approx(parts.item(), rel=1e-6)
    # redo the passes by hand: y' = G_a(x), x' = G_b(y), features from E_a/E_b + SL
    gen = model.dsgan.generator
    x, y = images[:, :1], images[:, 1:]
    torch.manual_seed(5)
    y_fake, f_x = gen(x, "t1")
    x_fake, f_y = gen(y, "flair")
    x_rec, f_yp = gen(y_fake, "flair")
    y_rec, f_xp = gen(x_fake, "t1")
    torch.testing.assert_close(losses["translation"], translation_loss(y_fake, y, x_fake, x))
    torch.testing.assert_close(losses["reconstruction"], reconstruction_loss(x_rec, x, y_rec, y))
    torch.testing.assert_close(losses["contrastive"], multimodal_contrastive_loss(f_x, f_y, f_xp, f_yp, 0.1))


def test_generator_and_discriminator_losses_reach_only_their_own_networks():
    torch.manual_seed(0)
    model = _method()
    losses = model.training_step(_batch(torch.randn(2, 2, 32, 32)), 0)
    groups = model.optimizer_groups()
    assert list(groups) == ["generator", "discriminator"]  # the loop steps them in this order
    assert {id(p) for p in groups["generator"]} == {id(p) for p in model.dsgan.generator.parameters()}
    assert {id(p) for p in groups["discriminator"]} == {id(p) for p in model.dsgan.dis.parameters()}
    losses["generator"].backward()
    assert all(p.grad is None for p in groups["discriminator"])  # Dis frozen for eq. 7
    assert all(p.grad is not None for p in groups["generator"])
    assert all(p.requires_grad for p in groups["discriminator"])  # ... and unfrozen again afterwards
    model.zero_grad(set_to_none=True)
    losses["discriminator"].backward()
    assert all(p.grad is None for p in groups["generator"])  # translations detached
    assert all(p.grad is not None for p in groups["discriminator"])


def test_no_gan_no_discriminator_step():
    model = _method({"gan": 0.0})
    losses = model.training_step(_batch(torch.randn(2, 2, 32, 32)), 0)
    assert not losses["discriminator"].requires_grad and losses["gan"].item() == 0.0
    assert losses["generator"].requires_grad


def test_bad_options_are_one_line():
    cases = [
        ({"options": {"lam": -1.0}}, "lam=-1"),
        ({"modalities": ["t1", "t2", "flair"]}, "exactly 2 modalities"),
        ({"options": {"lambda": 0.1}}, "has no option 'lambda'"),
        ({"options": {"betas": [0.5]}}, re.escape("betas=[0.5]")),
        ({"options": {"betas": [0.5, 1.0]}}, "betas=.*two values in \\[0, 1\\)"),
        ({"options": {"samples": -1}}, "samples=-1"),
        ({"size": 16}, "size=16"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            _method(**kwargs)
        assert "\n" not in str(info.value), kwargs


# ---------------------------------------------------------------- transfer
@pytest.mark.parametrize(
    "k, decoder_layers, random_rows",
    [
        (1, 3, ("output",)),  # the paper: E_a, SL, D_a's first three layers; the last layer random
        (1, 0, ("up2", "up3", "up4", "output")),  # Table VIII's Encoder_SL
        (2, 1, ("up4", "output")),  # SL_2 shares up1-2; D_a's first layer is up3
    ],
)
def test_transfer_copies_exactly_the_intended_tensors(k, decoder_layers, random_rows):
    torch.manual_seed(0)
    model = _method({"shared_layers": k, "decoder_layers": decoder_layers})
    with torch.no_grad():  # make BatchNorm weights and buffers non-default too
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype.is_floating_point:
                t.add_(torch.rand_like(t))
    state = model.state_dict()

    pre = Pretraining(path=None, record={}, state=state)
    kept_prefixes = rows_prefixes(random_rows)
    nets = {}
    for m in MODS:
        unet = UNet(1, 1, 4)
        fresh = {key: v.clone() for key, v in unet.state_dict().items()}
        copied = transfer_to_unet(pre.generator_state(m), unet, k, decoder_layers)
        branch = model.dsgan.generator.branches[m].state_dict()
        for key, value in unet.state_dict().items():
            if key.startswith(kept_prefixes):
                assert key not in copied and torch.equal(value, fresh[key]), key
            else:
                assert key in copied and torch.equal(value, branch[key]), key
        nets[m] = unet
    # modality X's U-Net got G_a, Y's got G_b: they agree exactly on SL and differ elsewhere
    shared = rows_prefixes(shared_rows(k))
    sa, sb = nets["t1"].state_dict(), nets["flair"].state_dict()
    for key in sa:
        if key.startswith(shared):
            assert torch.equal(sa[key], sb[key]), key
        elif sa[key].dim() > 1 and not key.startswith(kept_prefixes):  # conv weights: own random init
            assert not torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------- the pre-training run
@pytest.fixture(scope="module")
def pretrain_cli(brats_dir, tmp_path_factory):
    """One tiny pre-training made through the CLI, read (never changed) by the tests below;
    returns its folder and what the command printed."""
    run = tmp_path_factory.mktemp("mcd") / "pre"
    argv = [
        "pretrain",
        "--method",
        "multi-condos",
        "--data",
        str(brats_dir),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "4",
        "--base-channels",
        "4",
        "--size",
        "32",
        "--set",
        "options.samples=2",
        "--out",
        str(run),
        "--quiet",
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def pretrain_run(pretrain_cli):
    return pretrain_cli[0]


def _branch(state: dict, modality: str) -> dict:
    prefix = f"dsgan.generator.branches.{modality}."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def test_pretraining_run_folder(pretrain_cli, brats_dir):
    pretrain_run, printed = pretrain_cli
    record = json.loads((pretrain_run / "config.json").read_text())
    config = record["config"]
    assert "kind" not in record and record["modalities"] == MODS
    assert config["method"] == "multi-condos" and config["epochs"] == 2 and config["options"] == {"samples": 2}
    assert {k: config[k] for k in PRETRAIN_DEFAULTS if k != "epochs"} == {
        k: v for k, v in PRETRAIN_DEFAULTS.items() if k != "epochs"
    }  # lr 2e-4, constant, no weight decay
    # training patients only, labeled and unlabeled alike; validation and test patients never
    ids = sorted(p.name for p in brats_dir.iterdir() if p.is_dir())
    split = split_patients(ids, config["labeled"], 0, 0.2, 0.1)
    assert record["split"] == split.as_dict()
    held_out = sorted(split.val + split.test)
    pre = read_pretraining(pretrain_run)  # what --init reads
    assert pre.record["train_cases"] == split.train and not set(held_out) & set(pre.record["train_cases"])
    assert sorted(pre.record["train_cases"] + held_out) == ids
    assert pre.record["options"] == dataclasses.asdict(MultiConDoSOptions(samples=2))
    assert pre.record["epochs_done"] == 2 and pre.modalities == MODS
    # events: two training epochs, their samples, no validation and no test (it does not segment)
    train = read_events(pretrain_run, "train")
    assert [r["epoch"] for r in train] == [1, 2]
    for r in train:
        assert LOSSES <= set(r)
        assert all(math.isfinite(r[k]) for k in ("generator", "discriminator"))
        assert r["lr"] == 2e-4
    assert not read_events(pretrain_run, "val") and not read_events(pretrain_run, "test")
    assert [(r["epoch"], r["path"]) for r in read_events(pretrain_run, "samples")] == [
        (1, "samples/epoch_0001.npz"),
        (2, "samples/epoch_0002.npz"),
    ]
    samples = read_samples(pretrain_run)
    assert sorted(samples) == [1, 2]
    assert set(samples[2]) == {"t1", "flair", "t1_to_flair", "t1_to_flair_to_t1", "flair_to_t1", "flair_to_t1_to_flair"}
    assert all(a.shape == (2, 32, 32) and np.isfinite(a).all() for a in samples[2].values())
    assert np.array_equal(samples[1]["t1"], samples[2]["t1"])  # the same fixed slices each epoch
    # metrics.json: no scores, the last epoch's mean losses
    metrics = json.loads((pretrain_run / "metrics.json").read_text())
    assert set(metrics) == {"epoch", "per_patient", "summary", "protocol", "losses", "note"}
    assert metrics["epoch"] == 2 and metrics["per_patient"] == [] and metrics["summary"] == {}
    assert set(metrics["losses"]) == LOSSES
    assert metrics["losses"] == pytest.approx({k: train[-1][k] for k in LOSSES}, rel=1e-12)
    assert not (pretrain_run / "per_patient.csv").exists()
    # the checkpoint: both optimisers, the method's state (dsgan.*), one set of SL weights under both branches
    ckpt = torch.load(pretrain_run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and "optimizer" not in ckpt and set(ckpt["optimizers"]) == {"generator", "discriminator"}
    state = ckpt["method"]
    assert state and all(k.startswith("dsgan.") for k in state)
    shared = rows_prefixes(shared_rows(1))
    a, b = _branch(state, "t1"), _branch(state, "flair")
    assert a and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) == k.startswith(shared) for k in a if k.endswith("weight"))
    # what the command printed: the folder, the last losses, how to fine-tune
    lines = printed.splitlines()
    assert any(line.startswith(f"run folder: {pretrain_run} (2 epochs, ") for line in lines), printed
    assert any(line.startswith("last epoch: generator ") for line in lines), printed
    fine_tune = [line for line in lines if line.startswith("fine-tune: ")]
    assert len(fine_tune) == 1 and fine_tune[0].startswith("fine-tune: workbench train --method supervised --data ")
    assert fine_tune[0].endswith(f"--init {pretrain_run} --base-channels 4")


def test_pretraining_slices_drop_only_blank_ones(brats_dir, tmp_path):
    config = _pretrain_config(brats_dir)
    trainer = Trainer(config, tmp_path / "run", quiet=True)  # what the loop trains on
    trainer.close()
    splits, _ = load_splits(config, progress=False)
    images = splits.training_images()
    assert torch.equal(trainer._x_l, images) and trainer._y_l is None and trainer._x_u is None
    flat = images.flatten(2)
    assert ((flat.amax(2) - flat.amin(2)) > 1e-6).all()
    assert images.shape[0] > 0 and images.shape[1:] == (2, 32, 32)
    # every other slice of the training patients (labeled and unlabeled, in case order) is kept
    volumes = sorted(splits.labeled + splits.unlabeled, key=lambda v: v.case_id)
    assert [v.case_id for v in volumes] == splits.split.train
    every = torch.cat([v.images for v in volumes])
    spread = every.flatten(2).amax(2) - every.flatten(2).amin(2)
    keep = (spread > 1e-6).all(dim=1)
    assert torch.equal(images, every[keep])
    # a slice blank in one modality only is dropped, and only it
    k = int(torch.nonzero(keep[: volumes[0].images.shape[0]]).flatten()[-1])
    volumes[0].images[k, 1] = 0.0
    fewer = splits.training_images()
    assert fewer.shape[0] == images.shape[0] - 1
    assert torch.equal(fewer, torch.cat([v.images for v in volumes])[keep & (torch.arange(len(keep)) != k)])


def test_batches_hold_distinct_slices_and_repeat_per_seed(brats_dir, tmp_path):
    def draw(seed):
        return _distinct_batches(10, 4, 5, torch.Generator().manual_seed(seed))

    batches = draw(0)
    assert batches.shape == (5, 4) and all(len(set(b.tolist())) == 4 for b in batches)
    assert ((batches >= 0) & (batches < 10)).all()
    assert torch.equal(batches, draw(0)) and not torch.equal(batches, draw(1))
    assert len(set(batches[:2].flatten().tolist())) == 8  # one permutation: no slice twice in it
    # the loop's batches: distinct slices, no label, the same for the same (seed, epoch)
    trainer = Trainer(_pretrain_config(brats_dir, steps_per_epoch=3), tmp_path / "run", quiet=True)
    trainer.close()
    epoch_1 = list(trainer._batches(1))
    assert len(epoch_1) == 3 and all(len(parts) == 1 for parts in epoch_1)
    for (batch,) in epoch_1:
        assert batch.y_l is None and batch.x_u is None and batch.x_l.shape == (4, 2, 32, 32)
        rows = batch.x_l.flatten(1)
        assert all(not torch.equal(rows[i], rows[j]) for i in range(4) for j in range(i))
    assert all(torch.equal(a.x_l, b.x_l) for (a,), (b,) in zip(epoch_1, trainer._batches(1)))
    assert not all(torch.equal(a.x_l, b.x_l) for (a,), (b,) in zip(epoch_1, trainer._batches(2)))


def _same(a, b) -> bool:
    """Nested dicts / lists / tensors equal exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same_training(full_run, other_run):
    """Two pre-training folders hold the same trained state, optimisers, losses and samples."""
    want = torch.load(full_run / "checkpoint.pt", weights_only=True)
    got = torch.load(other_run / "checkpoint.pt", weights_only=True)
    assert want["epoch"] == got["epoch"] == 2
    for key, value in want["method"].items():
        assert torch.equal(value, got["method"][key]), key
    assert _same(want["optimizers"], got["optimizers"])
    assert read_events(full_run, "train") == read_events(other_run, "train")
    want_samples, got_samples = read_samples(full_run), read_samples(other_run)
    assert sorted(want_samples) == sorted(got_samples) == [1, 2]
    assert all(np.array_equal(want_samples[e][k], got_samples[e][k]) for e in want_samples for k in want_samples[e])


def test_resumed_pretraining_matches_uninterrupted(brats_dir, tmp_path, capsys):
    full = Trainer(_pretrain_config(brats_dir), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    for name in ("stopped", "stopped-cli"):
        first = Trainer(_pretrain_config(brats_dir), tmp_path / name, quiet=True)
        assert first.fit(stop_after=1) is None
        first.close()
        assert not (tmp_path / name / "metrics.json").exists()
    # through the API
    with pytest.raises(ConfigError, match="stopped at epoch 1 of 2"):  # unfinished: no --init from it
        read_pretraining(tmp_path / "stopped")
    resumed = Trainer.resume(tmp_path / "stopped", quiet=True)
    assert resumed.epoch == 1
    result = resumed.fit()
    resumed.close()
    assert result["losses"] == expected["losses"]
    for (name, a), (_, b) in zip(full.method.state_dict().items(), resumed.method.state_dict().items()):
        assert torch.equal(a, b), name
    _assert_same_training(tmp_path / "full", tmp_path / "stopped")
    assert read_pretraining(tmp_path / "stopped").record["epochs_done"] == 2
    # through the CLI, as --init's refusal says
    with pytest.raises(ConfigError, match="stopped at epoch 1 of 2") as info:
        read_pretraining(tmp_path / "stopped-cli")
    advice = re.search(r"`(workbench pretrain --resume \S+)`", str(info.value))
    assert advice and advice.group(1).split()[-1] == str(tmp_path / "stopped-cli"), str(info.value)
    assert main([*advice.group(1).split()[1:], "--quiet"]) == 0, capsys.readouterr().err
    assert "run folder: " in capsys.readouterr().out
    _assert_same_training(tmp_path / "full", tmp_path / "stopped-cli")
    assert json.loads((tmp_path / "stopped-cli" / "metrics.json").read_text())["losses"] == pytest.approx(
        expected["losses"], rel=1e-12
    )


def test_ctrl_c_in_the_first_epoch_resumes_from_the_epoch_0_checkpoint(brats_dir, tmp_path, monkeypatch):
    run = tmp_path / "stopped"
    first = Trainer(_pretrain_config(brats_dir), run, quiet=True)

    def interrupt_on_the_first_step(batch, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(first.method, "training_step", interrupt_on_the_first_step)
    with pytest.raises(TrainingInterrupted, match="stopped in epoch 1; its checkpoint of epoch 0 is kept") as info:
        first.fit()
    first.close()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert not read_events(run, "train")
    with pytest.raises(ConfigError, match="stopped at epoch 0 of 2"):
        read_pretraining(run)
    # the message says how to continue; doing so (through the CLI) gives the uninterrupted run
    advice = re.search(r"`workbench (train|pretrain) --resume (\S+)`", str(info.value))
    assert advice and advice.group(2) == str(run), str(info.value)
    assert main([advice.group(1), "--resume", str(run), "--quiet"]) == 0
    full = Trainer(_pretrain_config(brats_dir), tmp_path / "full", quiet=True)
    full.fit()
    full.close()
    _assert_same_training(tmp_path / "full", run)
    assert [r["epoch"] for r in read_events(run, "resume")] == [0]


def test_the_two_optimisers_step_in_turn(brats_dir, tmp_path):
    def one_epoch(run, options):
        trainer = Trainer(_pretrain_config(brats_dir, options, epochs=1, steps_per_epoch=2), run, quiet=True)
        assert list(trainer.optimizers) == ["generator", "discriminator"]
        assert all(
            g["betas"] == (0.5, 0.999) and g["lr"] == 2e-4 and g["weight_decay"] == 0.0
            for opt in trainer.optimizers.values()
            for g in opt.param_groups
        )
        nets = {"generator": trainer.method.dsgan.generator, "discriminator": trainer.method.dsgan.dis}
        before = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in nets.items()}
        order = []
        for name, opt in trainer.optimizers.items():

            def step(*args, _name=name, _step=opt.step, **kwargs):
                order.append(_name)
                return _step(*args, **kwargs)

            opt.step = step
        trainer.fit()
        trainer.close()
        moved = {
            name: [k for k, p in net.named_parameters() if not torch.equal(p, before[name][k])]
            for name, net in nets.items()
        }
        return trainer, order, moved, before

    # no GAN term: the discriminators' loss has no graph, so their optimiser never steps
    trainer, order, moved, before = one_epoch(tmp_path / "no-gan", {"gan": 0.0})
    assert order == ["generator", "generator"]
    dis = trainer.method.dsgan.dis.state_dict()
    assert all(torch.equal(dis[k], before["discriminator"][k]) for k in dis)  # parameters and buffers
    assert moved["discriminator"] == [] and moved["generator"]
    gen_params = list(trainer.method.dsgan.generator.parameters())
    assert len(trainer.optimizers["generator"].state) == len(gen_params)  # every generator tensor stepped
    assert len(trainer.optimizers["discriminator"].state) == 0
    # with it: generator, then discriminators, each step
    trainer, order, moved, _ = one_epoch(tmp_path / "gan", {})
    assert order == ["generator", "discriminator"] * 2
    assert moved["generator"] and moved["discriminator"]
    assert len(trainer.optimizers["discriminator"].state) == len(list(trainer.method.dsgan.dis.parameters()))


def test_init_starts_the_unets_from_the_pretrained_generators(pretrain_run, brats_dir, tmp_path):
    config = tiny_config(brats_dir, init=str(pretrain_run))
    trainer = Trainer(config, tmp_path / "ft", quiet=True)
    trainer.close()
    state = torch.load(pretrain_run / "checkpoint.pt", weights_only=True)["method"]
    for m in MODS:
        prefix = f"dsgan.generator.branches.{m}."
        for key, value in trainer.method.nets[m].state_dict().items():
            if not key.startswith("decoder.head."):
                assert torch.equal(value, state[prefix + key]), key
    record = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert record["config"]["init"] == str(pretrain_run)
    assert record["init"]["rows"][-1] == "up4" and record["init"]["tensors"]["t1"] > 0
    assert read_events(tmp_path / "ft", "init")[0]["run"] == str(pretrain_run.resolve())


def _earlier_loop_folder(path, brats_dir, epoch: int = 2, epochs: int = 2) -> dict:
    """A run folder as the earlier pre-training loop wrote it (config.json with ``kind``,
    ``train_cases`` and the options; checkpoint ``{"kind", "epoch", "model"}``), for the
    patients of ``tiny_config(brats_dir)``; returns the state dict it holds."""
    torch.manual_seed(3)
    method = _method()
    with torch.no_grad():  # unlike any fresh initialisation
        for t in list(method.parameters()) + list(method.buffers()):
            if t.dtype.is_floating_point:
                t.add_(torch.rand_like(t))
    split = load_splits(tiny_config(brats_dir), progress=False)[0].split
    options = {k: v for k, v in dataclasses.asdict(MultiConDoSOptions()).items() if k not in ("betas", "samples")}
    record = {
        "kind": KIND,
        "config": {
            "data": str(brats_dir),
            "fmt": "auto",
            "modalities": None,
            "epochs": epochs,
            "steps_per_epoch": 1,
            "batch_size": 4,
            "lr": 2e-4,
            "betas": [0.5, 0.999],
            "seed": 0,
            "size": 32,
            "base_channels": 4,
            "samples": 2,
            "options": {},
        },
        "modalities": MODS,
        "train_cases": split.train,
        "held_out_cases": sorted(split.val + split.test),
        "options": options,
    }
    path.mkdir()
    (path / "config.json").write_text(json.dumps(record, indent=2))
    state = method.state_dict()
    torch.save({"kind": KIND, "epoch": epoch, "model": state}, path / "checkpoint.pt")
    return state


def test_a_pretraining_of_the_earlier_loop_still_serves_init(brats_dir, tmp_path, capsys):
    old = tmp_path / "old"
    state = _earlier_loop_folder(old, brats_dir)
    pre = read_pretraining(old)
    assert pre.modalities == MODS and pre.record["epochs_done"] == 2
    for m in MODS:
        branch = pre.generator_state(m)
        assert branch and all(torch.equal(v, state[f"dsgan.generator.branches.{m}.{k}"]) for k, v in branch.items())
    # --init from it: the U-Nets start from its generators, the output layer keeps its own initialisation
    trainer = Trainer(tiny_config(brats_dir, init=str(old)), tmp_path / "ft", quiet=True)
    trainer.close()
    for m in MODS:
        branch = _branch(state, m)
        for key, value in trainer.method.nets[m].state_dict().items():
            if key.startswith("decoder.head."):
                assert value.dim() < 2 or not torch.equal(value, branch[key]), key
            else:
                assert torch.equal(value, branch[key]), key
    record = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert record["init"]["pretrain_epochs"] == 2 and record["init"]["rows"][-1] == "up4"
    assert all(record["init"]["tensors"][m] > 0 for m in MODS)
    # ... but it cannot be resumed (or opened): one line, and the folder is left as it was
    files = sorted(p.name for p in old.iterdir())
    with pytest.raises(ConfigError, match="a pre-training made by the earlier pre-training loop") as info:
        Trainer.resume(old, quiet=True)
    assert "\n" not in str(info.value) and "cannot be resumed or opened" in str(info.value)
    for argv in (["train", "--resume", str(old)], ["pretrain", "--resume", str(old)], ["eval", str(old)]):
        assert "earlier pre-training loop" in _one_error_line(capsys, argv), argv
    assert sorted(p.name for p in old.iterdir()) == files
    # an unfinished one serves no --init
    stopped = tmp_path / "old-stopped"
    _earlier_loop_folder(stopped, brats_dir, epoch=1)
    with pytest.raises(ConfigError, match="stopped at epoch 1 of 2"):
        read_pretraining(stopped)


def test_cli_pretrain_then_train_with_init(pretrain_run, brats_dir, tmp_path, capsys):
    run = tmp_path / "ft"
    argv = [
        "train",
        "--method",
        "supervised",
        "--data",
        str(brats_dir),
        "--labeled",
        "0.4",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--base-channels",
        "4",
        "--size",
        "32",
        "--init",
        str(pretrain_run),
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "per-patient DSC" in capsys.readouterr().out
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["init"] == str(pretrain_run) and record["init"]["pretrain_epochs"] == 2
    assert read_events(run, "init") and read_events(run, "test")


def _one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def _usage_error_line(capsys, argv) -> str:
    """A command line the parser refuses: exit status 2, one line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def _train_argv(data, init, *extra, method="supervised"):
    return [
        "train",
        "--method",
        method,
        "--data",
        str(data),
        "--base-channels",
        "4",
        "--size",
        "32",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--init",
        str(init),
        "--quiet",
        *extra,
    ]


def test_init_errors_are_one_line(pretrain_run, brats_dir, tmp_path, capsys):
    out = ["--out", str(tmp_path / "ft")]
    assert "no such run folder" in _one_error_line(capsys, _train_argv(brats_dir, tmp_path / "nowhere", *out))
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _one_error_line(capsys, _train_argv(brats_dir, tmp_path / "empty", *out))
    # a supervised training run is not a pre-training
    sup = tmp_path / "sup"
    assert (
        main(
            [
                "train",
                "--method",
                "supervised",
                "--data",
                str(brats_dir),
                "--base-channels",
                "4",
                "--size",
                "32",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--batch-size",
                "2",
                "--out",
                str(sup),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    err = _one_error_line(capsys, _train_argv(brats_dir, sup, *out))
    assert "'supervised' training run, not a multi-condos pre-training" in err
    # other width, a method with teachers, a method without U-Nets, a pre-training that saw this run's test patients
    err = _one_error_line(capsys, _train_argv(brats_dir, pretrain_run, *out, "--set", "base_channels=8"))
    assert "base_channels=4" in err
    err = _one_error_line(capsys, _train_argv(brats_dir, pretrain_run, *out, method="mean-teacher"))
    assert "other networks" in err
    err = _one_error_line(capsys, _train_argv(brats_dir, pretrain_run, *out, method="multi-condos"))
    assert "no per-modality U-Nets" in err
    leaky = tmp_path / "leaky"
    shutil.copytree(pretrain_run, leaky)
    record = json.loads((leaky / "config.json").read_text())
    record["split"]["unlabeled"] += record["split"]["val"] + record["split"]["test"]
    (leaky / "config.json").write_text(json.dumps(record))
    assert "validation or test patient" in _one_error_line(capsys, _train_argv(brats_dir, leaky, *out))
    # --resume takes no --init
    assert "--init cannot be changed on --resume" in _one_error_line(
        capsys, ["train", "--resume", str(sup), "--init", str(pretrain_run)]
    )


def test_pretrain_errors_are_one_line(brats_dir, tmp_path, capsys):
    base = ["pretrain", "--data", str(brats_dir), "--out", str(tmp_path / "p"), "--quiet"]
    # --method defaults to multi-condos; a method that is not a pre-training is refused
    assert "invalid choice: 'supervised'" in _usage_error_line(capsys, base + ["--method", "supervised"])
    with_method = base + ["--method", "multi-condos"]
    assert "exactly 2" in _one_error_line(capsys, with_method + ["--modalities", "t1,t2,flair"])
    assert "size=40" in _one_error_line(capsys, with_method + ["--size", "40"])
    assert "no option 'lambda'" in _one_error_line(capsys, with_method + ["--set", "options.lambda=1"])
    assert "betas=[0.5]" in _one_error_line(capsys, with_method + ["--set", "options.betas=[0.5]"])
    # the earlier `--set samples=2` is now an option; an epoch is at least one step (0: one pass)
    assert "unknown config key 'samples'" in _one_error_line(capsys, with_method + ["--set", "samples=2"])
    assert "steps_per_epoch=-1: must be >= 1, or 0" in _one_error_line(
        capsys, with_method + ["--steps-per-epoch", "-1"]
    )
    assert "nowhere" in _one_error_line(
        capsys, ["pretrain", "--method", "multi-condos", "--data", str(tmp_path / "nowhere"), "--quiet"]
    )
    assert "no checkpoint" in _one_error_line(capsys, ["pretrain", "--resume", str(tmp_path / "nothing")])
    assert "--epochs cannot be changed on --resume" in _one_error_line(
        capsys, ["pretrain", "--resume", str(tmp_path / "nothing"), "--epochs", "3"]
    )
    assert not (tmp_path / "p").exists()


def test_pretraining_refuses_an_existing_run(pretrain_run, brats_dir, capsys):
    files = sorted(p.name for p in pretrain_run.iterdir())
    with pytest.raises(ConfigError, match="already has a run"):
        Trainer(_pretrain_config(brats_dir), pretrain_run, quiet=True)
    with pytest.raises(DataError, match="no checkpoint"):
        Trainer.resume(pretrain_run.parent / "missing", quiet=True)
    argv = [
        "pretrain",
        "--data",
        str(brats_dir),
        "--base-channels",
        "4",
        "--size",
        "32",
        "--out",
        str(pretrain_run),
        "--quiet",
    ]
    assert "already has a run" in _one_error_line(capsys, argv)
    assert sorted(p.name for p in pretrain_run.iterdir()) == files
