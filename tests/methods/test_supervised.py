import torch

from tests.conftest import tiny_config
from workbench.methods import get_method


def _dropouts(method):
    return [m for m in method.modules() if isinstance(m, torch.nn.Dropout2d)]


def test_dropout_option_keeps_or_removes_the_unets_dropout():
    config = tiny_config("unused")
    with_dropout = get_method("supervised")(["t1", "flair"], config)
    assert sorted({m.p for m in _dropouts(with_dropout)}) == [0.05, 0.1, 0.2, 0.3, 0.5]
    config = tiny_config("unused", options={"dropout": False})
    without = get_method("supervised")(["t1", "flair"], config)
    assert _dropouts(without) == []
    assert with_dropout.state_dict().keys() == without.state_dict().keys()  # --init transfers alike
