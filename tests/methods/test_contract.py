"""The contract every registered method keeps with the loop (:mod:`workbench.methods.base`).

Parametrised over the whole registry, so a new method is checked the moment it is
registered: named finite losses whose ``loss`` trains the parameters, exact resume mid-run
through the Trainer, predictions and features of the documented shapes, and a state-dict
round trip (also through a weights-only checkpoint file). The per-method files keep only
their equation-level tests.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.methods import METHODS, Batch, get_method
from workbench.train import Trainer

#: options that make each method's later stages happen within a 4-epoch tiny run, and the
#: resume (after epoch 3) fall after each stage switch
EPOCHS, STOP = 4, 3
STAGED = {
    "semi-cml-prel": {"m": 1, "p": 1, "L1": 4, "high_modality": "flair"},  # pool 2, teacher 3, stage 2 at 4
    "cross-view": {"pretrain_epochs": 2},  # self-training from epoch 3
}
MODALITIES = ["t1", "flair"]
SIZE = 32


def _config(data, method: str, **overrides):
    values = dict(method=method, epochs=EPOCHS, unlabeled_batch_size=2, options=dict(STAGED.get(method, {})))
    values.update(overrides)
    return tiny_config(data, **values)


def _method(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return get_method(name)(MODALITIES, _config("unused", name))


def _batch(k: int = 2) -> Batch:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(4, 2, SIZE, SIZE, generator=gen)
    labels = (torch.rand(4, 1, SIZE, SIZE, generator=gen) > 0.7).float()
    return Batch(images, labels, torch.randn(k, 2, SIZE, SIZE, generator=gen))


def _expected_keys(predictions: dict) -> bool:
    return set(predictions) == set(MODALITIES) or set(predictions) == {"fused", "t1 only", "flair only"}


@pytest.fixture(params=sorted(METHODS))
def name(request) -> str:
    return request.param


def test_two_steps_give_finite_named_losses_that_train(name):
    """Each optimiser group's loss exists, is finite, and stepping the groups in turn (as the
    loop does) moves the parameters of every group."""
    method = _method(name)
    method.train()
    groups = method.optimizer_groups()
    assert groups and all(groups.values()), f"{name}: an empty optimiser group"
    before = {g: [p.detach().clone() for p in params] for g, params in groups.items()}
    optimizers = {g: torch.optim.Adam(params, lr=1e-3) for g, params in groups.items()}
    for step in range(2):
        method.epoch = 1
        losses = method.training_step(_batch(), step)
        assert all(math.isfinite(float(v)) for v in losses.values()), losses
        for g, optimizer in optimizers.items():
            assert losses[g].requires_grad, f"{name}: loss {g!r} has no graph"
            optimizer.zero_grad()
            losses[g].backward()
            optimizer.step()
        method.after_optimizer_step(step + 1)
    for g, params in groups.items():
        assert any(not torch.equal(b, p) for b, p in zip(before[g], params)), f"{name}: group {g!r} did not move"


def test_exact_resume_mid_run(name, brats_dir, tmp_path):
    full = Trainer(_config(brats_dir, name), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    first = Trainer(_config(brats_dir, name), tmp_path / "cut", quiet=True)
    assert first.fit(stop_after=STOP) is None  # stopped mid-run, checkpointed
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    result = resumed.fit()
    resumed.close()
    assert result["per_patient"] == expected["per_patient"]
    resumed_state = resumed.method.state_dict()
    for key, value in full.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed_state[key]), key
    for event in ("train", "val"):
        assert read_events(tmp_path / "full", event) == read_events(tmp_path / "cut", event)


def test_predict_and_features_have_the_documented_shapes(name):
    method = _method(name).eval()
    images = _batch().x_l
    if not method.segments:  # a pre-training: says so in one line instead of predicting
        with pytest.raises(ConfigError, match="does not segment"):
            method.predict(images)
        return
    with torch.no_grad():
        predictions = method.predict(images)
    assert _expected_keys(predictions), sorted(predictions)
    for p in predictions.values():
        assert p.shape == (4, 1, SIZE, SIZE) and 0.0 <= float(p.min()) and float(p.max()) <= 1.0
    try:
        with torch.no_grad():
            features = method.features(images)
    except ConfigError as exc:  # documented: a method without per-modality networks
        assert "no per-modality networks" in str(exc)
        return
    assert features
    for maps in features.values():
        bottleneck, decoder = maps["bottleneck"], maps["decoder"]
        assert bottleneck.dim() == 4 and bottleneck.shape[0] == 4 and bottleneck.shape[-1] == SIZE // 16
        assert decoder.dim() == 4 and decoder.shape[0] == 4 and decoder.shape[-2:] == (SIZE, SIZE)


def test_state_dict_round_trip(name, tmp_path):
    trained, fresh = _method(name, seed=0), _method(name, seed=1)
    torch.save(trained.state_dict(), tmp_path / "state.pt")
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    want_state, got_state = trained.state_dict(), fresh.state_dict()
    assert all(torch.equal(want_state[k], got_state[k]) for k in want_state if isinstance(want_state[k], torch.Tensor))
    if not trained.segments:
        return
    images = _batch().x_l
    trained.eval(), fresh.eval()
    with torch.no_grad():
        want, got = trained.predict(images), fresh.predict(images)
    assert all(torch.equal(want[k], got[k]) for k in want)


# ---------------------------------------------------------------- 3D (spatial_dims=3)
#: every method whose networks train in 3D (``spatial_dims_supported``)
METHODS_3D = sorted(n for n, cls in METHODS.items() if 3 in cls.spatial_dims_supported)
PATCH = [16, 16, 16]
THREE_D = dict(spatial_dims=3, patch=PATCH, batch_size=2, unlabeled_batch_size=2, steps_per_epoch=2, base_channels=4)


def test_the_volumetric_papers_methods_train_in_3d():
    assert {"supervised", "mean-teacher", "ua-mt", "cps", "cross-view", "meng-fusion", "cmc"} <= set(METHODS_3D)
    assert "semi-cml" not in METHODS_3D and "multi-condos" not in METHODS_3D  # 2D papers


@pytest.mark.parametrize("name_3d", METHODS_3D)
def test_3d_two_steps_then_exact_resume(name_3d, brats_dir, tmp_path):
    """A 3D run of every 3D method: finite losses, predictions of whole volumes (sliding
    windows), and a resumed run that ends bit for bit where an uninterrupted one does."""
    options = {"mc_passes": 2} if name_3d == "ua-mt" else {}

    def config():
        return tiny_config(brats_dir, method=name_3d, epochs=2, options=dict(options), **THREE_D)

    full = Trainer(config(), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    assert all(
        math.isfinite(v)
        for record in read_events(tmp_path / "full", "train")
        for k, v in record.items()
        if isinstance(v, float)
    )
    first = Trainer(config(), tmp_path / "cut", quiet=True)
    assert first.fit(stop_after=1) is None
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    assert resumed.fit()["per_patient"] == expected["per_patient"]
    resumed.close()
    for key, value in full.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.method.state_dict()[key]), key
    volume = full.splits.test[0]
    from workbench.inference import predict_volume

    probs = predict_volume(full.method, volume, torch.device("cpu"))
    assert _expected_keys(probs) and all(p.shape == volume.label.shape for p in probs.values())


#: the methods that can build the papers' V-Net (``backbones_supported``)
METHODS_VNET = sorted(n for n, cls in METHODS.items() if "vnet" in cls.backbones_supported)


def test_the_volumetric_baselines_can_use_the_vnet():
    assert METHODS_VNET == ["cps", "cross-view", "mean-teacher", "supervised", "ua-mt"]


@pytest.mark.parametrize("name_vnet", METHODS_VNET)
def test_3d_vnet_backbone_trains_and_predicts(name_vnet, brats_dir, tmp_path):
    from workbench.inference import predict_volume
    from workbench.nets.vnet import VNet

    options = {"mc_passes": 2} if name_vnet == "ua-mt" else {}
    config = tiny_config(brats_dir, method=name_vnet, epochs=1, backbone="vnet", options=options, **THREE_D)
    trainer = Trainer(config, tmp_path / "run", quiet=True)
    trainer.fit()
    trainer.close()
    assert any(isinstance(m, VNet) for m in trainer.method.modules())
    assert not any(type(m).__name__ == "UNet" for m in trainer.method.modules())
    losses = [v for r in read_events(tmp_path / "run", "train") for v in r.values() if isinstance(v, float)]
    assert losses and all(math.isfinite(v) for v in losses)
    volume = trainer.splits.test[0]
    probs = predict_volume(trainer.method, volume, torch.device("cpu"))
    assert all(p.shape == volume.label.shape for p in probs.values())


def test_3d_settings_are_checked_in_one_line(brats_dir):
    with pytest.raises(ConfigError, match="method 'semi-cml' trains in 2D only, not with spatial_dims=3"):
        tiny_config(brats_dir, method="semi-cml", spatial_dims=3).validate()
    with pytest.raises(ConfigError, match=r"patch=\[24, 32, 32\]: need three sizes"):
        tiny_config(brats_dir, spatial_dims=3, patch=[24, 32, 32]).validate()
    with pytest.raises(ConfigError, match="spatial_dims=4"):
        tiny_config(brats_dir, spatial_dims=4).validate()
    with pytest.raises(ConfigError, match="method 'cmc' builds its own networks: backbone='vnet'"):
        tiny_config(brats_dir, method="cmc", spatial_dims=3, backbone="vnet").validate()
    with pytest.raises(ConfigError, match="backbone='vnet' is a 3D network: use spatial_dims=3, not 2"):
        tiny_config(brats_dir, backbone="vnet").validate()
