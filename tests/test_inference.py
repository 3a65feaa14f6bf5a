import math

import pytest
import torch

from workbench.data.slices import Volume
from workbench.errors import ConfigError
from workbench.inference import Perturbation

MODALITIES = ["t1", "flair"]


def _volume(z=3, size=12):
    torch.manual_seed(0)
    images = torch.rand(z, 2, size, size)
    label = (torch.rand(z, 1, size, size) > 0.7).float()
    return Volume("P1", images, label, (2.0, 1.0, 1.0))


def test_parse_shift_and_drop():
    p = Perturbation.parse(["flair=2,-1", "t1=0,0,15"], ["t1"])
    assert p.shifts == {"flair": (2.0, -1.0, 0.0), "t1": (0.0, 0.0, 15.0)} and p.drops == ("t1",)
    assert p.describe() == "shift flair by (2, -1) voxels, 0 degrees; shift t1 by (0, 0) voxels, 15 degrees; drop t1"
    assert not Perturbation.parse()
    for bad in ("flair", "flair=1", "flair=a,b", "=1,2", "flair=1,2,3,4", "flair=nan,1"):
        with pytest.raises(ConfigError, match="--shift"):
            Perturbation.parse([bad])


def test_unknown_modality_is_one_line():
    with pytest.raises(ConfigError, match="modality 'PT' is not one of the run's: t1, flair"):
        Perturbation.parse(["PT=1,0"]).apply(_volume(), MODALITIES)
    with pytest.raises(ConfigError, match="modality 'CT'"):
        Perturbation.parse(drops=["CT"]).check(MODALITIES)


def test_integer_shift_moves_only_the_named_modality_exactly():
    volume = _volume()
    before = volume.images.clone()
    out = Perturbation.parse(["flair=2,-3"]).apply(volume, MODALITIES)
    assert torch.equal(volume.images, before)  # the input volume is untouched
    assert torch.equal(out.images[:, 0], volume.images[:, 0])  # t1 as it was
    assert torch.equal(out.label, volume.label) and out.spacing == volume.spacing and out.case_id == "P1"
    expected = torch.zeros_like(volume.images[:, 1])
    expected[:, 2:, :-3] = volume.images[:, 1, :-2, 3:]  # content moves +2 rows, -3 columns; zeros come in
    torch.testing.assert_close(out.images[:, 1], expected, atol=1e-6, rtol=0)


def test_rotation_is_about_the_centre_and_clockwise_on_screen():
    volume = _volume(z=1, size=9)
    volume.images.zero_()
    volume.images[0, 1, 1, 4] = 1.0  # above the centre (4, 4)
    out = Perturbation.parse(["flair=0,0,90"]).apply(volume, MODALITIES)
    peak = divmod(int(out.images[0, 1].argmax()), 9)
    assert peak == (4, 7)  # a quarter turn clockwise (rows down): top goes to the right
    assert math.isclose(float(out.images[0, 1].sum()), 1.0, abs_tol=1e-5)


def test_drop_zeros_one_channel():
    volume = _volume()
    out = Perturbation.parse(drops=["t1"]).apply(volume, MODALITIES)
    assert torch.equal(out.images[:, 0], torch.zeros_like(out.images[:, 0]))
    assert torch.equal(out.images[:, 1], volume.images[:, 1])


class _Conv3dMethod(torch.nn.Module):
    """A stand-in 3D method: ``predict`` maps (B, 2, X, Y, Z) to per-modality probabilities."""

    def __init__(self, constant=None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(2, 2, kernel_size=3, padding=1)
        self.constant = constant

    def predict(self, x):
        if self.constant is not None:
            return {"a": torch.full_like(x[:, :1], self.constant), "b": torch.full_like(x[:, 1:], self.constant)}
        p = torch.sigmoid(self.conv(x))
        return {"a": p[:, :1], "b": p[:, 1:]}


def test_one_window_covering_the_volume_equals_a_whole_volume_forward():
    from workbench.inference import sliding_window_probabilities

    method = _Conv3dMethod()
    x = torch.randn(1, 2, 12, 10, 8)
    out = sliding_window_probabilities(method, x, (12, 10, 8), overlap=0.0, blend="constant")
    whole = method.predict(x)
    for key in ("a", "b"):
        torch.testing.assert_close(out[key], whole[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_overlapping_windows_agree_on_a_constant_net(blend):
    from workbench.inference import sliding_window_probabilities

    x = torch.randn(1, 2, 20, 17, 9)
    out = sliding_window_probabilities(_Conv3dMethod(constant=0.3), x, (8, 8, 8), overlap=0.5, blend=blend)
    assert out["a"].shape == (1, 1, 20, 17, 9)
    torch.testing.assert_close(out["a"], torch.full_like(out["a"], 0.3), atol=1e-5, rtol=0)


def test_bad_window_settings_are_one_line():
    from workbench.inference import sliding_window_probabilities

    with pytest.raises(ConfigError, match="unknown blend 'max'"):
        sliding_window_probabilities(_Conv3dMethod(), torch.randn(1, 2, 8, 8, 8), (8, 8, 8), blend="max")
    with pytest.raises(ConfigError, match="overlap=1.0"):
        sliding_window_probabilities(_Conv3dMethod(), torch.randn(1, 2, 8, 8, 8), (8, 8, 8), overlap=1.0)
