"""t-SNE maps of what the segmentation networks have learned.

Methods with one U-Net per modality (``supervised``, ``semi-cml``, ``semi-cml-prel``, and
any method that implements ``Method.features``) turn every slice into feature maps before
the last 1x1 convolution turns them into a tumour probability. Two of those maps are
worth looking at:

* ``bottleneck``: the deepest encoder level, ``(16*base, H/16, W/16)``. Averaged over the
  slice it is one vector that summarises the whole slice ("what is in this image").
* ``decoder``: the last decoder block, ``(base, H, W)``: one vector per pixel, the very
  vectors from which the head decides tumour or background.

At ``level="slice"`` each slice gives one vector per modality (global average pool of the
layer); at ``level="pixel"`` each sampled pixel gives one ``decoder`` vector per modality.
t-SNE (van der Maaten & Hinton, 2008; here openTSNE) then lays these vectors out on a 2D
map so that vectors that are near neighbours in feature space stay near on the map.

How to read the maps:

* The two modalities come from two different networks, whose feature channels have
  nothing to do with each other (channel 3 of the T1 network is not channel 3 of the
  FLAIR network). Coloured by ``modality``, two separate islands are therefore expected
  and are not a finding; compare points *within* one island.
* Coloured by ``source``: are the unlabeled and test slices mixed in with the labeled
  ones, or off on their own? Semi-supervised training sees the unlabeled slices, so it
  may pull them in; a supervised network has only ever seen the labeled ones.
* Coloured by ``tumour``: at pixel level, a network that segments well keeps tumour and
  background pixels apart. At slice level note that the labeled slice set keeps tumour
  slices only, while the unlabeled one is chosen without labels (by default the slices
  with enough body / brain, see ``Volume.slices_to_keep``), so slices without tumour come
  from the unlabeled and the test patients. The tumour flag of unlabeled slices is the
  ground truth that training never saw.
* t-SNE keeps neighbourhoods, not distances: cluster sizes and the gaps between clusters
  mean little, and the axes have no units (their tick labels are hidden for that reason).

Typical use::

    features = extract_features("runs/semi-cml", level="pixel")
    points = features.embed(seed=0)          # adds columns tsne_1, tsne_2
    tsne_scatter(points, colour_by="tumour").show()
    compare_runs_tsne({"supervised": "runs/sup", "semi-cml": "runs/cml"}, colour_by="source").show()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor
from tqdm.auto import tqdm

from workbench.data.slices import DataSplits
from workbench.errors import ConfigError, DataError
from workbench.inference import OpenRun, open_run

__all__ = [
    "FeatureSet",
    "extract_features",
    "embed_tsne",
    "tsne_scatter",
    "compare_runs_tsne",
    "LAYERS",
    "LEVELS",
    "SOURCES",
    "COLOUR_BY",
]

LAYERS = ("bottleneck", "decoder")
LEVELS = ("slice", "pixel")
SOURCES = ("labeled", "unlabeled", "test")
COLOUR_BY = ("modality", "tumour", "source", "patient")

# Fixed colours where a category has an obvious meaning; anything else cycles through PALETTE.
FIXED_COLOURS = {
    "tumour slice": "#d62728",
    "slice without tumour": "#9e9e9e",
    "tumour pixel": "#d62728",
    "background pixel": "#9e9e9e",
    "labeled": "#1f77b4",
    "unlabeled": "#ff7f0e",
    "test": "#2ca02c",
}
PALETTE = plotly.colors.qualitative.Plotly


@dataclass
class FeatureSet:
    """Feature vectors and what each one is.

    Attributes:
        points: one row per vector, columns ``modality, source, patient, slice, tumour``
            (plus ``y, x``, the pixel position, at pixel level).
        features: ``(N, C)`` float32; row i is described by ``points.iloc[i]``.
        layer: ``"bottleneck"`` or ``"decoder"``.
        level: ``"slice"`` or ``"pixel"``.
        run: where the features come from (run folder name, and method if it differs), for titles.
    """

    points: pd.DataFrame
    features: np.ndarray
    layer: str
    level: str
    run: str = ""

    def embed(self, *, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 1) -> pd.DataFrame:
        """A copy of ``points`` with the t-SNE map as columns ``tsne_1, tsne_2`` (see
        :func:`embed_tsne`). Layer, level and run travel along in ``DataFrame.attrs``
        for the figure titles."""
        xy = embed_tsne(self.features, seed=seed, perplexity=perplexity, n_jobs=n_jobs)
        points = self.points.assign(tsne_1=xy[:, 0], tsne_2=xy[:, 1])
        points.attrs.update(layer=self.layer, level=self.level, run=self.run)
        return points


# ----------------------------------------------------------------------------- extraction
def _check_choices(layer: str | None, level: str, sources: tuple[str, ...], sample: int) -> str:
    """The layer to use (None: bottleneck per slice, decoder per pixel); ConfigError otherwise."""
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level!r}; choose one of: {', '.join(LEVELS)}")
    layer = layer or ("bottleneck" if level == "slice" else "decoder")
    if layer not in LAYERS:
        raise ConfigError(f"unknown layer {layer!r}; choose one of: {', '.join(LAYERS)}")
    if level == "pixel" and layer != "decoder":
        raise ConfigError(f"layer {layer!r} at level 'pixel': it is 16x coarser than the image; use layer='decoder'")
    if not sources:
        raise ConfigError(f"no sources given; choose from: {', '.join(SOURCES)}")
    for source in sources:
        if source not in SOURCES:
            raise ConfigError(f"unknown source {source!r}; choose from: {', '.join(SOURCES)}")
    if sample < 1:
        raise ConfigError(f"sample={sample}: must be >= 1")
    return layer


def _slice_pool(splits: DataSplits, sources: tuple[str, ...]) -> tuple[Tensor, Tensor, pd.DataFrame]:
    """Images ``(N, M, H, W)``, labels ``(N, 1, H, W)`` and one row (source, patient, slice)
    per slice of the chosen sources, in that order."""
    parts = []  # (source, images, labels, patient per slice, slice index per slice)
    for source in sources:
        if source == "test":
            for vol in splits.test:
                z = vol.images.shape[0]
                parts.append((source, vol.images, vol.label, [vol.case_id] * z, list(range(z))))
        else:
            sset = splits.train_labeled if source == "labeled" else splits.train_unlabeled
            parts.append((source, sset.images, sset.labels, sset.case_ids, sset.slice_index))
    parts = [p for p in parts if p[3]]  # an empty slice set (e.g. no unlabeled patients)
    if not parts:
        raise DataError(f"the run has no slices in sources {list(sources)}")
    rows = pd.DataFrame(
        [
            {"source": source, "patient": patient, "slice": int(index)}
            for source, _, _, patients, indices in parts
            for patient, index in zip(patients, indices)
        ]
    )
    return torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), rows


def _pick(groups: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``n`` items, drawn at random, the groups taking turns:
    every group gets an equal share, and when a group runs out the others fill its place."""
    picked, turn = [], []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        chosen = rng.choice(members, size=min(n, len(members)), replace=False)
        picked.append(chosen)
        turn.append(np.arange(len(chosen)))
    picked, turn = np.concatenate(picked), np.concatenate(turn)
    return np.sort(picked[np.argsort(turn, kind="stable")[:n]])


@torch.no_grad()
def _layer_vectors(
    opened: OpenRun,
    images: Tensor,
    rows: np.ndarray,
    yx: tuple[np.ndarray, np.ndarray] | None,
    layer: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    """modality -> ``(P, C)``: for point p, the layer of slice ``rows[p]`` averaged over the
    slice (``yx`` None) or taken at pixel ``yx[0][p], yx[1][p]``. ``rows`` must be sorted."""
    method = opened.method
    slices = np.unique(rows)
    size = opened.config.eval_batch_size
    out: dict[str, list[np.ndarray]] = {}  # keyed as method.features() keys them (modalities, or "fused")
    was_training = method.training
    method.eval()  # no dropout, BatchNorm running statistics
    try:
        for start in tqdm(
            range(0, len(slices), size), desc="features", unit="batch", disable=not progress, leave=False
        ):
            chunk = slices[start : start + size]
            maps = method.features(images[chunk].to(opened.device))
            mine = np.flatnonzero(np.isin(rows, chunk))  # the points on these slices, in order
            local = torch.as_tensor(np.searchsorted(chunk, rows[mine]))
            for m, layers in maps.items():
                fmap = layers[layer].float()
                if yx is None:
                    vectors = fmap.mean(dim=(2, 3))[local]
                else:
                    vectors = fmap[local, :, torch.as_tensor(yx[0][mine]), torch.as_tensor(yx[1][mine])]
                out.setdefault(m, []).append(vectors.cpu().numpy())
    finally:
        method.train(was_training)
    return {m: np.concatenate(parts) for m, parts in out.items()}


def extract_features(
    run: str | Path | OpenRun,
    *,
    layer: str | None = None,
    level: str = "slice",
    sample: int = 400,
    seed: int = 0,
    sources: tuple[str, ...] | str = SOURCES,
    progress: bool = True,
) -> FeatureSet:
    """Feature vectors of a trained run's per-modality networks, with what each one is.

    Slices (or pixels) are drawn once and every modality's network sees the same ones, so
    each point of one modality has a twin in the other. Sampling is reproducible with
    ``seed``; the sources take turns so that a small source is not drowned out, and at pixel
    level tumour and background pixels take turns too (balanced while both last).

    Args:
        run: a run folder (opened with :func:`~workbench.inference.open_run`), an ``OpenRun`` or a ``Trainer``.
        layer: ``"bottleneck"`` or ``"decoder"``; None: bottleneck per slice, decoder per pixel.
        level: ``"slice"``: one vector per slice, the layer averaged over the slice;
            ``"pixel"``: the decoder vector at randomly drawn pixels.
        sample: at most this many slices (or pixels) per modality.
        seed: seed of the draw.
        sources: any of ``"labeled"``, ``"unlabeled"`` (training slices, tumour slices
            only) and ``"test"`` (every slice of the test patients).
        progress: show a progress bar over the batches.

    Returns:
        A :class:`FeatureSet`; ``features`` is ``(n_modalities * n, C)``, modality by
        modality, with C = 16 * base_channels (bottleneck) or base_channels (decoder) for
        one U-Net per modality. The ``modality`` column holds the keys of
        ``Method.features`` (a method that overrides it may name its networks otherwise).

    Raises:
        ConfigError: unknown layer, level or source; bottleneck at pixel level; a method
            without per-modality networks (``mm-supervised``).
        DataError: no checkpoint in the run folder, or no slices in the chosen sources.
    """
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    layer = _check_choices(layer, level, sources, sample)
    opened = open_run(run) if isinstance(run, (str, os.PathLike)) else run
    images, labels, meta = _slice_pool(opened.splits, sources)
    source_code = meta["source"].map(SOURCES.index).to_numpy()
    rng = np.random.default_rng(seed)
    if level == "slice":
        rows = _pick(source_code, sample, rng)
        points = meta.iloc[rows].reset_index(drop=True)
        points["tumour"] = (labels[rows].flatten(1).amax(dim=1) > 0.5).numpy()
        yx = None
    else:
        tumour = (labels[:, 0] > 0.5).numpy()  # (N, H, W)
        groups = tumour * len(SOURCES) + source_code[:, None, None]  # tumour x source
        rows, y, x = np.unravel_index(_pick(groups.ravel(), sample, rng), tumour.shape)
        points = meta.iloc[rows].reset_index(drop=True).assign(tumour=tumour[rows, y, x], y=y, x=x)
        yx = (y, x)
    vectors = _layer_vectors(opened, images, rows, yx, layer, progress)
    modalities = list(vectors)
    points = pd.concat([points.assign(modality=m) for m in modalities], ignore_index=True)
    columns = ["modality", "source", "patient", "slice", "tumour"] + (["y", "x"] if level == "pixel" else [])
    features = np.concatenate([vectors[m] for m in modalities]).astype(np.float32)
    name, method = opened.run_dir.name, opened.config.method
    return FeatureSet(points[columns], features, layer, level, name if name == method else f"{name} ({method})")


# ----------------------------------------------------------------------------- t-SNE
def embed_tsne(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 1) -> np.ndarray:
    """A 2D t-SNE map ``(N, 2)`` of feature vectors ``(N, C)``, with openTSNE.

    Each feature is standardised first (zero mean, unit variance; constant features stay
    0) so that a few channels with large activations do not decide the neighbours alone.
    The perplexity (roughly: how many neighbours each point cares about) must be at most
    ``(N - 1) / 3`` for N points; a larger value is lowered to that without a warning.
    The map depends on ``seed`` and is identical for the same seed, features and
    ``n_jobs``.

    Raises:
        DataError: features not 2D, not finite, or fewer than 4 vectors.
        ConfigError: perplexity <= 0.
    """
    from openTSNE import TSNE  # imported here: it takes a second or two to load

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 4:
        raise DataError(f"features of shape {tuple(x.shape)}: t-SNE needs a 2D array of at least 4 vectors")
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or infinite values: cannot embed them")
    if perplexity <= 0:
        raise ConfigError(f"perplexity={perplexity}: must be > 0 (typically 5 to 50)")
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    tsne = TSNE(perplexity=min(perplexity, (len(x) - 1) / 3), random_state=seed, n_jobs=n_jobs, verbose=False)
    return np.asarray(tsne.fit(x), dtype=np.float64)


# ----------------------------------------------------------------------------- figures
# Marker shape per modality when the colour shows something else, with its glyph for the key.
SYMBOLS = [("circle", "\u25cf"), ("diamond", "\u25c6"), ("square", "\u25a0"), ("triangle-up", "\u25b2")]
LEGEND_TITLES = {"modality": "network", "source": "data split"}
_AXIS = {"showticklabels": False, "showgrid": False, "zeroline": False}  # t-SNE coordinates have no units


def _tumour_words(points: pd.DataFrame) -> pd.Series:
    """'tumour pixel' / 'background pixel', or 'tumour slice' / 'slice without tumour'."""
    if "y" in points:
        return points["tumour"].map({True: "tumour pixel", False: "background pixel"})
    return points["tumour"].map({True: "tumour slice", False: "slice without tumour"})


def _categories(points: pd.DataFrame, colour_by: str) -> pd.Series:
    if colour_by not in COLOUR_BY:
        raise ConfigError(f"unknown colour_by {colour_by!r}; choose one of: {', '.join(COLOUR_BY)}")
    return _tumour_words(points) if colour_by == "tumour" else points[colour_by].astype(str)


def _order(categories: list[str]) -> list[str]:
    """Legend order: tumour first, sources in their usual order, the rest as they come."""
    known = [c for c in FIXED_COLOURS if c in categories]
    return known + [c for c in categories if c not in known]


@dataclass
class _Style:
    """What every panel shares: a colour per category, a marker shape per modality, and a
    subtitle saying what a point is and what colour and shape mean."""

    colour_by: str
    colours: dict[str, str]
    symbols: dict[str, str]
    subtitle: str


def _style(points: pd.DataFrame, colour_by: str) -> _Style:
    categories = _order(list(pd.unique(_categories(points, colour_by))))
    free = iter(PALETTE * (len(categories) // len(PALETTE) + 1))
    colours = {c: FIXED_COLOURS.get(c) or next(free) for c in categories}
    modalities = list(pd.unique(points["modality"]))
    level = "pixel" if "y" in points else "slice"
    subtitle = f"one point per {level} per network, coloured by {LEGEND_TITLES.get(colour_by, colour_by)}"
    if colour_by == "modality":
        symbols = {m: "circle" for m in modalities}
    else:  # the networks usually form separate islands: the shapes say which is which
        shapes = [SYMBOLS[i % len(SYMBOLS)] for i in range(len(modalities))]
        symbols = {m: symbol for m, (symbol, _) in zip(modalities, shapes)}
        subtitle += "; " + ",  ".join(f"{glyph} {m} network" for m, (_, glyph) in zip(modalities, shapes))
    return _Style(colour_by, colours, symbols, subtitle)


def _hover(points: pd.DataFrame) -> list[str]:
    text = (
        "patient "
        + points["patient"].astype(str)
        + ", slice "
        + points["slice"].astype(str)
        + "<br>"
        + points["modality"].astype(str)
        + " network, "
        + points["source"].astype(str)
        + "<br>"
        + _tumour_words(points)
    )
    if "y" in points:
        text = text + " at y " + points["y"].astype(str) + ", x " + points["x"].astype(str)
    return text.tolist()


def _traces(points: pd.DataFrame, style: _Style, shown: set[str]) -> list[go.Scatter]:
    """One marker trace per category. A category's first trace (over all panels) carries
    its legend entry; ``legendgroup`` makes one click toggle it in every panel."""
    if not {"tsne_1", "tsne_2"} <= set(points):
        raise ConfigError("points have no t-SNE columns tsne_1, tsne_2: use FeatureSet.embed() first")
    categories = _categories(points, style.colour_by)
    traces = []
    for category in _order(list(pd.unique(categories))):
        part = points[categories == category]
        traces.append(
            go.Scatter(
                x=part["tsne_1"],
                y=part["tsne_2"],
                mode="markers",
                name=category,
                legendgroup=category,
                showlegend=category not in shown,
                text=_hover(part),
                hovertemplate="%{text}<extra></extra>",
                marker={
                    "color": style.colours[category],
                    "symbol": part["modality"].map(style.symbols).tolist(),
                    "size": 6,
                    "opacity": 0.75,
                    "line": {"width": 0},
                },
            )
        )
        shown.add(category)
    return traces


def _legend(colour_by: str) -> dict:
    return {"title": {"text": LEGEND_TITLES.get(colour_by, colour_by)}, "itemsizing": "constant"}


def tsne_scatter(points: pd.DataFrame, colour_by: str = "modality", *, title: str | None = None) -> go.Figure:
    """Scatter of a t-SNE map (``FeatureSet.embed()`` output), one legend entry per category.

    Colour shows ``colour_by``; unless that is the modality, the marker shape shows which
    network (modality) a point comes from, with the key in the subtitle.

    Args:
        points: rows with ``tsne_1, tsne_2`` and the metadata of :func:`extract_features`.
        colour_by: ``"modality"``, ``"tumour"``, ``"source"`` or ``"patient"``.
        title: figure title (the subtitle is kept); default names the layer and the run.

    Hovering a point shows its patient, slice, network, source, tumour flag (and pixel).
    """
    style = _style(points, colour_by)
    fig = go.Figure(_traces(points, style, set()))
    run = points.attrs.get("run", "")
    default = f"t-SNE of {points.attrs.get('layer', 'network')} features{': ' + run if run else ''}"
    fig.update_layout(
        title={"text": f"{title or default}<br><sup>{style.subtitle}</sup>"},
        width=680,
        height=580,
        legend=_legend(colour_by),
        xaxis={"title": "t-SNE 1", **_AXIS},
        yaxis={"title": "t-SNE 2", "scaleanchor": "x", **_AXIS},
    )
    return fig


def compare_runs_tsne(
    runs: dict[str, str | Path | OpenRun],
    *,
    colour_by: str = "modality",
    layer: str | None = None,
    level: str = "slice",
    sample: int = 400,
    seed: int = 0,
    perplexity: float = 30.0,
    sources: tuple[str, ...] | str = SOURCES,
    progress: bool = True,
    title: str | None = None,
) -> go.Figure:
    """Side-by-side t-SNE maps of several runs (e.g. supervised vs semi-cml), same colours.

    Every run gets the same draw of slices or pixels (same ``seed``, so the same points
    when the runs share their data split) and its own t-SNE: the panels' axes are not
    comparable, only what sits next to what within a panel. The legend is shared; clicking
    an entry hides that category in every panel.

    Args:
        runs: panel title -> run folder, ``OpenRun`` or ``Trainer``, in panel order.
        colour_by, title: as in :func:`tsne_scatter`.
        layer, level, sample, seed, sources, progress: as in :func:`extract_features`;
            ``seed`` also seeds t-SNE, with ``perplexity`` as in :func:`embed_tsne`.
    """
    if not runs:
        raise ConfigError("no runs to compare: pass {panel title: run folder, ...}")
    maps = {
        label: extract_features(
            run, layer=layer, level=level, sample=sample, seed=seed, sources=sources, progress=progress
        ).embed(seed=seed, perplexity=perplexity)
        for label, run in runs.items()
    }
    style = _style(pd.concat(list(maps.values()), ignore_index=True), colour_by)
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=list(maps), horizontal_spacing=0.04)
    shown: set[str] = set()
    for col, points in enumerate(maps.values(), start=1):
        for trace in _traces(points, style, shown):
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title_text="t-SNE 1", row=1, col=col, **_AXIS)
        fig.update_yaxes(
            title_text="t-SNE 2" if col == 1 else None,
            scaleanchor=f"x{col if col > 1 else ''}",
            row=1,
            col=col,
            **_AXIS,
        )
    default = f"t-SNE of {next(iter(maps.values())).attrs['layer']} features, one panel per run"
    subtitle = f"{style.subtitle}<br>each panel is its own t-SNE map: compare neighbourhoods, not positions"
    fig.update_layout(
        title={"text": f"{title or default}<br><sup>{subtitle}</sup>"},
        width=120 + 440 * len(maps),
        height=580,
        margin={"t": 130},
        legend=_legend(colour_by),
    )
    return fig
