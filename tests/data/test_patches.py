import pytest
import torch

from workbench.data.patches import PatchSampler
from workbench.errors import ConfigError


def _volumes(n=3, shape=(20, 18, 16)):
    torch.manual_seed(0)
    images, labels = [], []
    for _ in range(n):
        label = torch.zeros(1, *shape)
        label[0, 4:9, 5:10, 3:7] = 1  # a small foreground block
        image = torch.cat([label.clone(), torch.randn(1, *shape)])  # channel 0 repeats the label
        images.append(image)
        labels.append(label)
    return images, labels


def test_shapes_and_image_label_alignment():
    images, labels = _volumes()
    sampler = PatchSampler(images, labels, (8, 8, 8), foreground=0.5, seed=0)
    x, y = sampler.sample([0, 1, 2, 0], step=0, positions=range(4))
    assert x.shape == (4, 2, 8, 8, 8) and y.shape == (4, 1, 8, 8, 8)
    assert torch.equal(x[:, :1], y)  # the label channel of the image is the label patch


def _centre_is_foreground(y):
    return [bool(p[0, 4, 4, 4] > 0) for p in y]


def test_foreground_fraction_as_configured():
    images, labels = _volumes(1)
    always = PatchSampler(images, labels, (8, 8, 8), foreground=1.0, seed=0)
    hits = []
    for step in range(20):
        _, y = always.sample([0, 0], step, [0, 1])
        hits += _centre_is_foreground(y)
    assert all(hits)  # every patch centred on a foreground voxel
    half = PatchSampler(images, labels, (8, 8, 8), foreground=0.5, seed=0)
    hits = []
    for step in range(100):
        _, y = half.sample([0, 0], step, [0, 1])
        hits += _centre_is_foreground(y)
    assert 0.35 < sum(hits) / len(hits) < 0.65
    uniform = PatchSampler(images, labels, (8, 8, 8), foreground=0.0, seed=0)
    hits = []
    for step in range(100):
        _, y = uniform.sample([0, 0], step, [0, 1])
        hits += _centre_is_foreground(y)
    assert sum(hits) / len(hits) < 0.35  # the block is a small part of the volume


def test_deterministic_per_seed_step_and_position():
    images, labels = _volumes()
    a = PatchSampler(images, labels, (8, 8, 8), foreground=0.5, seed=1)
    b = PatchSampler(images, labels, (8, 8, 8), foreground=0.5, seed=1)
    xa, _ = a.sample([0, 1], 5, [0, 1])
    xb, _ = b.sample([0, 1], 5, [0, 1])
    assert torch.equal(xa, xb)
    shard, _ = b.sample([1], 5, [1])  # one process's shard draws what the whole batch drew there
    assert torch.equal(shard[0], xa[1])
    other, _ = a.sample([0, 1], 6, [0, 1])
    assert not torch.equal(other, xa)
    assert not torch.equal(PatchSampler(images, labels, (8, 8, 8), 0.5, seed=2).sample([0, 1], 5, [0, 1])[0], xa)


def test_small_volumes_are_padded_and_unlabeled_volumes_crop_uniformly():
    images, _ = _volumes(2, shape=(6, 10, 4))
    sampler = PatchSampler(images, None, (8, 8, 8), seed=0)
    x, y = sampler.sample([0, 1], 0, [0, 1], stream=1)
    assert x.shape == (2, 2, 8, 8, 8) and y is None


def test_bad_settings_are_one_line():
    images, labels = _volumes(1)
    with pytest.raises(ConfigError, match=r"patch=\[8, 8\]: need three sizes"):
        PatchSampler(images, labels, (8, 8))
    with pytest.raises(ConfigError, match="foreground=1.5"):
        PatchSampler(images, labels, (8, 8, 8), foreground=1.5)
