import json
import math
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from workbench.cli import main
from workbench.errors import ConfigError, DataError
from workbench.events import read_events
from workbench.methods.multi_condos import (
    KIND,
    MultiConDoS,
    MultiConDoSOptions,
    PretrainConfig,
    Pretrainer,
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
from workbench.train import Trainer

MODS = ["t1", "flair"]
TINY = dict(epochs=2, steps_per_epoch=1, batch_size=4, base_channels=4, size=32, samples=2)


def _pretrain_config(data, **overrides) -> PretrainConfig:
    return PretrainConfig(data=str(data), **{**TINY, **overrides})


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
    lit_full, _ = _grads(lambda a, b, c, d: _literal_pair_loss(a, b, 0.1) + _literal_pair_loss(c, d, 0.1),
                         fa, fb, fap, fbp)
    assert full.item() == pytest.approx(lit_full.item(), rel=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: contrastive_pair_loss(a, b, 0.5),
                                    [f.double().requires_grad_(True) for f in (fa, fb)])


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
        return (_literal_mean(_literal_bce_logit(z, 1) for z in fy.flatten())
                + _literal_mean(_literal_bce_logit(z, 1) for z in fx.flatten()))

    def lit_d(ry, fy, rx, fx):  # -eq. 4 halved per discriminator
        term = lambda r, f: 0.5 * (_literal_mean(_literal_bce_logit(z, 1) for z in r.flatten())  # noqa: E731
                                   + _literal_mean(_literal_bce_logit(z, 0) for z in f.flatten()))
        return term(ry, fy) + term(rx, fx)

    for fn, lit, args in ((gan_generator_loss, lit_g, (fy, fx)), (gan_discriminator_loss, lit_d, (ry, fy, rx, fx))):
        value, grads = _grads(fn, *args)
        literal, literal_grads = _grads(lit, *args)
        assert value.item() == pytest.approx(literal.item(), rel=1e-10)
        for g, lg in zip(grads, literal_grads):
            torch.testing.assert_close(g, lg, rtol=1e-9, atol=1e-12)
    # eq. 4 itself: D's loss is -1/2 (E log D(real) + E log(1 - D(fake))) per discriminator
    d = torch.sigmoid
    eq4 = (torch.log(d(ry)).mean() + torch.log(1 - d(fy)).mean() + torch.log(d(rx)).mean()
           + torch.log(1 - d(fx)).mean())
    assert gan_discriminator_loss(ry, fy, rx, fx).item() == pytest.approx(-0.5 * eq4.item(), rel=1e-5)


def test_translation_and_reconstruction_losses_match_eqs_5_and_6():
    torch.manual_seed(2)
    a, b, c, e = (torch.randn(2, 1, 3, 3) for _ in range(4))

    def lit(p, q, r, s):  # E ||p - q||_1 + E ||r - s||_1, means over pixels
        return (_literal_mean(abs(u - v) for u, v in zip(p.flatten(), q.flatten()))
                + _literal_mean(abs(u - v) for u, v in zip(r.flatten(), s.flatten())))

    for fn in (translation_loss, reconstruction_loss):
        value, grads = _grads(fn, a, b, c, e)
        literal, literal_grads = _grads(lit, a, b, c, e)
        assert value.item() == pytest.approx(literal.item(), rel=1e-10)
        for g, lg in zip(grads, literal_grads):
            torch.testing.assert_close(g, lg)


# ---------------------------------------------------------------- the model
def test_paper_hyper_parameters_are_the_defaults():
    opts, config = MultiConDoSOptions(), PretrainConfig()
    assert (opts.gamma, opts.beta, opts.lam, opts.temperature) == (10.0, 1.0, 0.1, 0.1)  # section V
    assert opts.shared_layers == 1 and opts.share and opts.decoder_layers == 3  # Fig. 6, section IV-D
    assert config.lr == 2e-4 and config.betas == [0.5, 0.999]


def test_training_step_is_eq_7_on_the_right_images():
    torch.manual_seed(0)
    model = MultiConDoS(MODS, 4, MultiConDoSOptions())
    images = torch.randn(3, 2, 32, 32)
    torch.manual_seed(5)
    losses = model.training_step(images)
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
    model = MultiConDoS(MODS, 4, MultiConDoSOptions())
    losses = model.training_step(torch.randn(2, 2, 32, 32))
    groups = model.parameter_groups()
    losses["generator"].backward()
    assert all(p.grad is None for p in groups["discriminator"])  # Dis frozen for eq. 7
    assert all(p.grad is not None for p in groups["generator"])
    model.zero_grad(set_to_none=True)
    losses["discriminator"].backward()
    assert all(p.grad is None for p in groups["generator"])  # translations detached
    assert all(p.grad is not None for p in groups["discriminator"])


def test_no_gan_no_discriminator_step():
    model = MultiConDoS(MODS, 4, MultiConDoSOptions(gan=0.0))
    losses = model.training_step(torch.randn(2, 2, 32, 32))
    assert not losses["discriminator"].requires_grad and losses["gan"].item() == 0.0


def test_bad_options_are_one_line():
    with pytest.raises(ConfigError, match="lam=-1"):
        MultiConDoS(MODS, 4, MultiConDoSOptions(lam=-1.0))
    with pytest.raises(ConfigError, match="exactly 2 modalities"):
        MultiConDoS(["t1", "t2", "flair"], 4, MultiConDoSOptions())
    with pytest.raises(ConfigError, match="has no option 'lambda'"):
        PretrainConfig(data="x", options={"lambda": 0.1}).validate()


# ---------------------------------------------------------------- transfer
@pytest.mark.parametrize("k, decoder_layers, random_rows", [
    (1, 3, ("output",)),  # the paper: E_a, SL, D_a's first three layers; the last layer random
    (1, 0, ("up2", "up3", "up4", "output")),  # Table VIII's Encoder_SL
    (2, 1, ("up4", "output")),  # SL_2 shares up1-2; D_a's first layer is up3
])
def test_transfer_copies_exactly_the_intended_tensors(k, decoder_layers, random_rows):
    torch.manual_seed(0)
    model = MultiConDoS(MODS, 4, MultiConDoSOptions(shared_layers=k, decoder_layers=decoder_layers))
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
def pretrain_run(brats_dir, tmp_path_factory):
    """One tiny pre-training made through the CLI, read (never changed) by the tests below."""
    run = tmp_path_factory.mktemp("mcd") / "pre"
    argv = ["pretrain", "--method", "multi-condos", "--data", str(brats_dir), "--epochs", "2", "--steps-per-epoch",
            "1", "--batch-size", "4", "--base-channels", "4", "--size", "32", "--set", "samples=2",
            "--out", str(run), "--quiet"]
    assert main(argv) == 0
    return run


def test_pretraining_run_folder(pretrain_run, brats_dir):
    record = json.loads((pretrain_run / "config.json").read_text())
    assert record["kind"] == KIND and record["modalities"] == MODS
    assert record["options"]["gamma"] == 10.0 and record["config"]["epochs"] == 2
    # training patients only, labeled and unlabeled alike; validation and test patients never
    from workbench.data.slices import split_patients

    ids = sorted(p.name for p in brats_dir.iterdir() if p.is_dir())
    split = split_patients(ids, 0.4, 0, 0.2, 0.1)
    held_out = sorted(split.val + split.test)
    assert record["held_out_cases"] == held_out and not set(held_out) & set(record["train_cases"])
    assert sorted(record["train_cases"] + held_out) == ids
    train = read_events(pretrain_run, "train")
    assert [r["epoch"] for r in train] == [1, 2]
    for r in train:
        assert {"generator", "discriminator", "gan", "translation", "reconstruction", "contrastive"} <= set(r)
        assert all(math.isfinite(r[k]) for k in ("generator", "discriminator"))
    samples = read_samples(pretrain_run)
    assert sorted(samples) == [1, 2]
    assert set(samples[2]) == {"t1", "flair", "t1_to_flair", "t1_to_flair_to_t1", "flair_to_t1",
                               "flair_to_t1_to_flair"}
    assert all(a.shape == (2, 32, 32) and np.isfinite(a).all() for a in samples[2].values())
    # the checkpoint holds one set of SL weights under both branches
    state = torch.load(pretrain_run / "checkpoint.pt", weights_only=False)["model"]
    shared = rows_prefixes(shared_rows(1))
    a = {k[len("dsgan.generator.branches.t1."):]: v for k, v in state.items()
         if k.startswith("dsgan.generator.branches.t1.")}
    b = {k[len("dsgan.generator.branches.flair."):]: v for k, v in state.items()
         if k.startswith("dsgan.generator.branches.flair.")}
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) == k.startswith(shared) for k in a if k.endswith("weight"))


def test_pretraining_slices_drop_only_blank_ones(brats_dir, tmp_path):
    from workbench.methods.multi_condos import load_pretraining_slices

    data = load_pretraining_slices(_pretrain_config(brats_dir), progress=False)
    flat = data.images.flatten(2)
    assert ((flat.amax(2) - flat.amin(2)) > 1e-6).all()
    assert data.info["n_slices"] == data.images.shape[0] > 0 and data.images.shape[1:] == (2, 32, 32)


def test_batches_hold_distinct_slices_and_repeat_per_seed():
    from workbench.methods.multi_condos import _draw_batches

    draw = lambda seed: _draw_batches(10, 4, 5, torch.Generator().manual_seed(seed))  # noqa: E731
    batches = draw(0)
    assert len(batches) == 5 and all(len(set(b.tolist())) == 4 for b in batches)
    assert all(torch.equal(a, b) for a, b in zip(batches, draw(0)))
    assert sorted(torch.cat(batches[:2]).tolist()) == sorted(set(torch.cat(batches[:2]).tolist()))  # one permutation


def test_resumed_pretraining_matches_uninterrupted(brats_dir, tmp_path):
    full = Pretrainer(_pretrain_config(brats_dir), tmp_path / "full", quiet=True)
    full.fit()
    full.close()
    first = Pretrainer(_pretrain_config(brats_dir), tmp_path / "stopped", quiet=True)
    assert first.fit(stop_after=1) is None
    first.close()
    with pytest.raises(ConfigError, match="stopped at epoch 1 of 2"):  # unfinished: no --init from it
        read_pretraining(tmp_path / "stopped")
    resumed = Pretrainer.resume(tmp_path / "stopped", quiet=True)
    resumed.fit()
    resumed.close()
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert read_events(tmp_path / "full", "train") == read_events(tmp_path / "stopped", "train")


def test_ctrl_c_in_the_first_epoch_resumes_from_the_epoch_0_checkpoint(brats_dir, tmp_path, monkeypatch):
    from workbench.train import TrainingInterrupted

    run = tmp_path / "stopped"
    first = Pretrainer(_pretrain_config(brats_dir), run, quiet=True)
    real_step = first.model.training_step

    def interrupt_on_the_first_step(images):
        raise KeyboardInterrupt

    monkeypatch.setattr(first.model, "training_step", interrupt_on_the_first_step)
    with pytest.raises(TrainingInterrupted, match="checkpoint of epoch 0 is kept") as info:
        first.fit()
    first.close()
    assert f"workbench pretrain --resume {run}" in str(info.value)
    monkeypatch.setattr(first.model, "training_step", real_step)
    with pytest.raises(ConfigError, match="stopped at epoch 0 of 2"):
        read_pretraining(run)
    resumed = Pretrainer.resume(run, quiet=True)
    resumed.fit()
    resumed.close()
    full = Pretrainer(_pretrain_config(brats_dir), tmp_path / "full", quiet=True)
    full.fit()
    full.close()
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_init_starts_the_unets_from_the_pretrained_generators(pretrain_run, brats_dir, tmp_path):
    config = tiny_config(brats_dir, init=str(pretrain_run))
    trainer = Trainer(config, tmp_path / "ft", quiet=True)
    trainer.close()
    state = torch.load(pretrain_run / "checkpoint.pt", weights_only=False)["model"]
    for m in MODS:
        prefix = f"dsgan.generator.branches.{m}."
        for key, value in trainer.method.nets[m].state_dict().items():
            if not key.startswith("decoder.head."):
                assert torch.equal(value, state[prefix + key]), key
    record = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert record["config"]["init"] == str(pretrain_run)
    assert record["init"]["rows"][-1] == "up4" and record["init"]["tensors"]["t1"] > 0
    assert read_events(tmp_path / "ft", "init")[0]["run"] == str(pretrain_run.resolve())


def test_cli_pretrain_then_train_with_init(pretrain_run, brats_dir, tmp_path, capsys):
    run = tmp_path / "ft"
    argv = ["train", "--method", "supervised", "--data", str(brats_dir), "--labeled", "0.4", "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "2", "--base-channels", "4", "--size", "32",
            "--init", str(pretrain_run), "--out", str(run), "--quiet"]
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


def _train_argv(data, init, *extra, method="supervised"):
    return ["train", "--method", method, "--data", str(data), "--base-channels", "4", "--size", "32",
            "--epochs", "1", "--steps-per-epoch", "1", "--init", str(init), "--quiet", *extra]


def test_init_errors_are_one_line(pretrain_run, brats_dir, tmp_path, capsys):
    out = ["--out", str(tmp_path / "ft")]
    assert "no such run folder" in _one_error_line(capsys, _train_argv(brats_dir, tmp_path / "nowhere", *out))
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _one_error_line(capsys, _train_argv(brats_dir, tmp_path / "empty", *out))
    # a supervised training run is not a pre-training
    sup = tmp_path / "sup"
    assert main(["train", "--method", "supervised", "--data", str(brats_dir), "--base-channels", "4", "--size",
                 "32", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--out", str(sup),
                 "--quiet"]) == 0
    capsys.readouterr()
    err = _one_error_line(capsys, _train_argv(brats_dir, sup, *out))
    assert "'supervised' training run, not a multi-condos pre-training" in err
    # other width, a method with teachers, a pre-training that saw this run's test patients
    err = _one_error_line(capsys, _train_argv(brats_dir, pretrain_run, *out, "--set", "base_channels=8"))
    assert "base_channels=4" in err
    err = _one_error_line(capsys, _train_argv(brats_dir, pretrain_run, *out, method="mean-teacher"))
    assert "other networks" in err
    leaky = tmp_path / "leaky"
    shutil.copytree(pretrain_run, leaky)
    record = json.loads((leaky / "config.json").read_text())
    record["train_cases"] += record["held_out_cases"]
    (leaky / "config.json").write_text(json.dumps(record))
    assert "validation or test patient" in _one_error_line(capsys, _train_argv(brats_dir, leaky, *out))
    # --resume takes no --init
    assert "--init cannot be changed on --resume" in _one_error_line(capsys, ["train", "--resume", str(sup), "--init",
                                                                          str(pretrain_run)])


def test_pretrain_errors_are_one_line(brats_dir, tmp_path, capsys):
    base = ["pretrain", "--data", str(brats_dir), "--out", str(tmp_path / "p"), "--quiet"]
    assert "--method is required" in _one_error_line(capsys, base)
    with_method = base + ["--method", "multi-condos"]
    assert "exactly 2" in _one_error_line(capsys, with_method + ["--modalities", "t1,t2,flair"])
    assert "size=40" in _one_error_line(capsys, with_method + ["--size", "40"])
    assert "no option 'lambda'" in _one_error_line(capsys, with_method + ["--set", "options.lambda=1"])
    assert "nowhere" in _one_error_line(capsys, ["pretrain", "--method", "multi-condos", "--data",
                                                 str(tmp_path / "nowhere"), "--quiet"])
    assert "no checkpoint" in _one_error_line(capsys, ["pretrain", "--resume", str(tmp_path / "nothing")])


def test_pretraining_refuses_an_existing_run(pretrain_run, brats_dir):
    with pytest.raises(ConfigError, match="already has a run"):
        Pretrainer(_pretrain_config(brats_dir), pretrain_run, quiet=True)
    with pytest.raises(DataError, match="no checkpoint"):
        Pretrainer.resume(pretrain_run.parent / "missing", quiet=True)
