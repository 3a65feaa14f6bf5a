"""t-SNE of network features: extraction, embedding and figures, on two tiny trained runs."""

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.train import Trainer
from workbench.viz.features import compare_runs_tsne, embed_tsne, extract_features, tsne_scatter

BASE = 4  # tiny_config's base_channels
SAMPLE = 24


@pytest.fixture(scope="module")
def runs(brats_dir, tmp_path_factory):
    """Trained tiny supervised and semi-cml runs (6 patients: 2 labeled, 3 unlabeled, 1 test)."""
    trainers = {}
    for method in ("supervised", "semi-cml"):
        trainer = Trainer(tiny_config(brats_dir, method=method, epochs=1), tmp_path_factory.mktemp(method), quiet=True)
        trainer.fit()
        trainers[method] = trainer
    yield trainers
    for trainer in trainers.values():
        trainer.close()


def _features(trainer, **kwargs):
    return extract_features(trainer, sample=SAMPLE, progress=False, **kwargs)


@pytest.mark.parametrize("layer, dim", [("bottleneck", 16 * BASE), ("decoder", BASE)])
def test_slice_level_shapes_and_metadata(runs, layer, dim):
    fs = _features(runs["semi-cml"], layer=layer)
    points = fs.points
    assert list(points.columns) == ["modality", "source", "patient", "slice", "tumour"]
    assert fs.features.shape == (len(points), dim) and fs.features.dtype == np.float32
    counts = points["modality"].value_counts()
    assert set(counts.index) == {"t1", "flair"} and (counts <= SAMPLE).all() and (counts == counts.iloc[0]).all()
    assert set(points["source"]) == {"labeled", "unlabeled", "test"}
    # each modality's network saw the same slices
    t1, flair = (points[points.modality == m].drop(columns="modality").reset_index(drop=True) for m in ("t1", "flair"))
    assert t1.equals(flair)
    # the labeled slice set holds tumour slices only; test patients bring slices without tumour
    assert points[points.source == "labeled"]["tumour"].all() and not points[points.source == "test"]["tumour"].all()


def test_slice_vector_is_the_pooled_layer_of_a_direct_forward_pass(runs):
    trainer = runs["supervised"]
    trainer.method.train()
    fs = _features(trainer, sources="labeled")
    assert trainer.method.training  # extraction ran in eval mode, then put the mode back
    row = fs.points.iloc[-1]  # a flair row
    labeled = trainer.splits.train_labeled
    i = next(
        k for k, (p, s) in enumerate(zip(labeled.case_ids, labeled.slice_index)) if p == row.patient and s == row.slice
    )
    trainer.method.eval()
    with torch.no_grad():
        _, maps = trainer.method.nets[row.modality].forward_with_features(labeled.images[i : i + 1, 1:2])
    np.testing.assert_allclose(fs.features[-1], maps["bottleneck"].mean(dim=(2, 3))[0].numpy(), rtol=1e-5, atol=1e-6)


def test_pixel_level_is_balanced_and_matches_labels(runs):
    trainer = runs["semi-cml"]
    fs = _features(trainer, level="pixel")
    points = fs.points
    assert fs.layer == "decoder" and fs.features.shape == (len(points), BASE)
    assert list(points.columns) == ["modality", "source", "patient", "slice", "tumour", "y", "x"]
    per_modality = points[points.modality == "t1"]
    assert len(per_modality) == SAMPLE
    # 3 sources x (tumour, background) take turns: 4 pixels of each
    assert (per_modality.groupby(["source", "tumour"]).size() == SAMPLE // 6).all()
    test = trainer.splits.test[0]
    row = points[(points.source == "test")].iloc[0]  # a t1 row: t1 comes first
    assert row.patient == test.case_id and bool(test.label[row.slice, 0, row.y, row.x] > 0.5) == row.tumour
    # the vector is the decoder feature at that pixel
    trainer.method.eval()
    with torch.no_grad():
        _, maps = trainer.method.nets["t1"].forward_with_features(test.images[row.slice : row.slice + 1, :1])
    i = points.index[(points.source == "test")][0]
    np.testing.assert_allclose(fs.features[i], maps["decoder"][0, :, row.y, row.x].numpy(), rtol=1e-5, atol=1e-6)


def test_run_folder_read_only_and_seeded_draw(runs):
    trainer = runs["supervised"]
    events = (trainer.run_dir / "events.jsonl").read_bytes()
    from_folder = _features(trainer.run_dir)
    assert (trainer.run_dir / "events.jsonl").read_bytes() == events
    from_trainer = _features(trainer)
    assert from_folder.points.equals(from_trainer.points)
    np.testing.assert_allclose(from_folder.features, from_trainer.features, rtol=1e-5, atol=1e-6)
    assert not _features(trainer, seed=1).points.equals(from_trainer.points)


def test_embed_tsne_is_seeded():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(4, 1, (30, 8))])
    a, b, c = (embed_tsne(features, seed=s) for s in (0, 0, 1))
    assert a.shape == (60, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert embed_tsne(features[:8], perplexity=30).shape == (8, 2)  # perplexity lowered to (8 - 1) / 3


def test_scatter_traces_and_hover(runs):
    fs = _features(runs["semi-cml"])
    points = fs.embed()
    assert {"tsne_1", "tsne_2"} <= set(points) and points.attrs["layer"] == "bottleneck"
    by_source = tsne_scatter(points, colour_by="source")
    assert [t.name for t in by_source.data] == ["labeled", "unlabeled", "test"]
    assert sum(len(t.x) for t in by_source.data) == len(points)
    assert len(tsne_scatter(points, colour_by="modality").data) == 2
    by_tumour = tsne_scatter(points, colour_by="tumour")
    assert [t.name for t in by_tumour.data] == ["tumour slice", "slice without tumour"]
    test_patient = runs["semi-cml"].splits.test[0].case_id
    assert any(test_patient in text for text in by_tumour.data[1].text)
    assert by_tumour.layout.xaxis.title.text == "t-SNE 1" and by_tumour.layout.yaxis.title.text == "t-SNE 2"
    assert "bottleneck" in by_tumour.layout.title.text and "t1 network" in by_tumour.layout.title.text


def test_compare_runs_has_one_panel_per_run_and_a_shared_legend(runs):
    fig = compare_runs_tsne(
        {"supervised": runs["supervised"], "semi-cml": runs["semi-cml"]},
        colour_by="source",
        sample=SAMPLE,
        progress=False,
    )
    assert [a.text for a in fig.layout.annotations] == ["supervised", "semi-cml"]
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert [t.name for t in fig.data if t.showlegend] == ["labeled", "unlabeled", "test"]
    assert all(t.legendgroup == t.name for t in fig.data)
    colours = {}
    for t in fig.data:
        assert colours.setdefault(t.name, t.marker.color) == t.marker.color


def test_bad_arguments_are_one_line_config_errors(runs, brats_dir, tmp_path):
    mm = Trainer(tiny_config(brats_dir, method="mm-supervised"), tmp_path / "mm", quiet=True)
    try:
        with pytest.raises(ConfigError, match="method 'mm-supervised' has no per-modality networks") as err:
            _features(mm)
        assert "\n" not in str(err.value)
    finally:
        mm.close()
    trainer = runs["supervised"]
    with pytest.raises(ConfigError, match="unknown layer 'encoder'; choose one of: bottleneck, decoder"):
        _features(trainer, layer="encoder")
    with pytest.raises(ConfigError, match="unknown level 'voxel'"):
        _features(trainer, level="voxel")
    with pytest.raises(ConfigError, match="unknown source 'train'"):
        _features(trainer, sources=("labeled", "train"))
    with pytest.raises(ConfigError, match="use layer='decoder'"):
        _features(trainer, layer="bottleneck", level="pixel")
    with pytest.raises(ConfigError, match="unknown colour_by 'size'"):
        tsne_scatter(_features(trainer).embed(), colour_by="size")
