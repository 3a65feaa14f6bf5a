import pytest
import torch

from tests.conftest import tiny_config
from workbench.augment import CROP_PAD_FRACTION, Augmentation, parse_augment
from workbench.errors import ConfigError
from workbench.methods import get_method
from workbench.train import Trainer


def test_parse_augment_method_none_and_lists():
    assert parse_augment("method", ("crop", "flip", "rotate")) == ("crop", "flip", "rotate")
    assert parse_augment("method", ()) == ()
    assert parse_augment("none", ("crop",)) == ()
    assert parse_augment("rotate, crop", ()) == ("crop", "rotate")  # applied in the fixed order
    with pytest.raises(ConfigError, match="augment='crop,shear': unknown transform 'shear'"):
        parse_augment("crop,shear", ())


def test_each_method_declares_its_papers_augmentation():
    assert get_method("cross-view").augmentation == ("crop", "flip", "rotate")
    assert get_method("meng-fusion").augmentation == ("crop",)
    for name in ("supervised", "semi-cml", "semi-cml-prel", "cmc"):
        assert get_method(name).augmentation == (), name


def _coded(batch=6, size=16):
    """Images whose channel 0 is the label and channel 1 a unique code per pixel: after any
    joint transform, channel 0 must still equal the label and channel 1 tells where each
    pixel came from."""
    torch.manual_seed(0)
    labels = (torch.rand(batch, 1, size, size) > 0.6).float()
    code = torch.arange(1, size * size + 1, dtype=torch.float32).view(1, 1, size, size).expand(batch, 1, -1, -1)
    return torch.cat([labels, code], dim=1), labels


@pytest.mark.parametrize("names", [("crop",), ("flip",), ("rotate",), ("crop", "flip", "rotate")])
def test_image_and_label_move_together(names):
    images, labels = _coded()
    aug = Augmentation(names, seed=0)
    changed = 0
    for step in range(5):
        x, y = aug(images, labels, step, range(6), 0)
        assert x.shape == images.shape and y.shape == labels.shape and x.dtype == images.dtype
        assert torch.equal(x[:, :1], y)  # the label channel of the image is the label: aligned
        changed += int(not torch.equal(x, images))
    assert changed > 0  # the transforms do something


def _symmetries(t):
    """The 8 symmetries of the square applied to ``(..., H, W)``."""
    out = []
    for k in range(4):
        r = torch.rot90(t, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_flip_and_rotate_give_symmetries_of_the_square_and_reach_all_eight():
    images, labels = _coded(batch=8)
    aug = Augmentation(("flip", "rotate"), seed=1)
    seen = set()
    for step in range(6):
        x, _ = aug(images, labels, step, range(8), 0)
        for k in range(8):
            matches = [i for i, s in enumerate(_symmetries(images[k, 1])) if torch.equal(s, x[k, 1])]
            assert len(matches) == 1
            seen.add(matches[0])
    assert seen == set(range(8))


def test_crop_is_a_shift_over_a_zero_background_of_at_most_an_eighth():
    images, labels = _coded(batch=8, size=16)
    pad = round(16 * CROP_PAD_FRACTION)
    x, _ = Augmentation(("crop",), seed=2)(images, labels, 0, range(8), 0)
    shifts = set()
    for k in range(8):
        code = x[k, 1]
        kept = code > 0
        assert kept.any()
        rows, cols = torch.nonzero(kept, as_tuple=True)
        first = int(code[rows[0], cols[0]]) - 1  # the original pixel now at (rows[0], cols[0])
        dr, dc = rows[0].item() - first // 16, cols[0].item() - first % 16
        assert abs(dr) <= pad and abs(dc) <= pad
        expected = torch.zeros(16, 16)
        src = images[k, 1]
        for r in range(16):
            for c in range(16):
                if 0 <= r - dr < 16 and 0 <= c - dc < 16:
                    expected[r, c] = src[r - dr, c - dc]
        assert torch.equal(code, expected)  # a pure shift, zeros where the padding shows
        shifts.add((dr, dc))
    assert len(shifts) > 1


def test_a_sample_draws_by_step_and_position_only():
    """Same (seed, step, position, stream): same transform, whichever batch the sample is in
    (the shard a process augments equals that part of the whole batch); another step, another draw."""
    images, labels = _coded(batch=8)
    aug = Augmentation(("crop", "flip", "rotate"), seed=3)
    whole, whole_y = aug(images, labels, 7, range(8), 0)
    again, _ = aug(images, labels, 7, range(8), 0)
    assert torch.equal(whole, again)
    shard, shard_y = aug(images[1::2], labels[1::2], 7, range(1, 8, 2), 0)
    assert torch.equal(shard, whole[1::2]) and torch.equal(shard_y, whole_y[1::2])
    other_step, _ = aug(images, labels, 8, range(8), 0)
    other_stream, _ = aug(images, labels, 7, range(8), 1)
    assert not torch.equal(other_step, whole) and not torch.equal(other_stream, whole)
    state = torch.get_rng_state()
    aug(images, labels, 9, range(8), 0)
    assert torch.equal(state, torch.get_rng_state())  # the torch RNG is not touched


def test_unlabeled_images_alone():
    images, _ = _coded(batch=4)
    x, y = Augmentation(("crop", "flip"), seed=0)(images, None, 0, range(4), 1)
    assert y is None and x.shape == images.shape


def test_augmented_run_resumes_exactly_and_none_is_the_default_for_supervised(brats_dir, tmp_path):
    def run(folder, stop_after=None, **overrides):
        trainer = Trainer(tiny_config(brats_dir, **overrides), tmp_path / folder, quiet=True)
        result = trainer.fit(stop_after=stop_after)
        trainer.close()
        return trainer, result

    full, expected = run("full", augment="crop,flip,rotate")
    run("cut", stop_after=1, augment="crop,flip,rotate")
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    assert resumed.fit()["per_patient"] == expected["per_patient"]
    resumed.close()
    for key, value in full.method.state_dict().items():
        assert torch.equal(value, resumed.method.state_dict()[key]), key
    plain, _ = run("plain")
    explicit_none, _ = run("none", augment="none")
    assert all(torch.equal(v, explicit_none.method.state_dict()[k]) for k, v in plain.method.state_dict().items())
    assert any(not torch.equal(v, full.method.state_dict()[k]) for k, v in plain.method.state_dict().items())
