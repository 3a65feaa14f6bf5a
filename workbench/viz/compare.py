"""Several methods side by side: one table and one plot of per-modality, per-patient DSC.

Input is a mapping ``label -> run folder`` (runs trained by :class:`workbench.train.Trainer`,
``workbench train`` or the cells of ``workbench reproduce``); each folder's ``per_patient.csv``
(read by :func:`workbench.reproduce.results.read_per_patient`) holds one row per test patient
and result row ("modality": ``t1``, ``flair``, or ``fused`` / ``t1 only`` for the dual-encoder
baselines). Runs of several seeds under one label are averaged per seed first, then mean ± std
over seeds (as in ``docs/results.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.errors import ConfigError
from workbench.events import read_events
from workbench.reproduce.results import read_per_patient, run_seed
from workbench.viz.curves import steering_label
from workbench.viz.style import method_colours

__all__ = ["collect_runs", "methods_table", "plot_methods_dsc", "plot_val_curves"]


def _as_list(runs: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]


def collect_runs(runs: Mapping[str, str | Path | Sequence[str | Path]]) -> pd.DataFrame:
    """Per-patient rows of every run: columns method, seed, modality, case_id, dsc, sens, hd95, ...

    ``runs`` maps a label (the method's name in the table) to one run folder or a list of
    folders (seeds). Each run's ``per_patient.csv`` is read by
    :func:`workbench.reproduce.results.read_per_patient` (the reader of the grid's tables too),
    the seed from its ``config.json``.
    """
    frames = []
    for label, dirs in runs.items():
        for run_dir in _as_list(dirs):
            frame = read_per_patient(run_dir, source="per_patient.csv")
            frame.insert(0, "seed", run_seed(run_dir))
            frame.insert(0, "method", label)
            frames.append(frame)
    if not frames:
        raise ConfigError("collect_runs: no runs given")
    return pd.concat(frames, ignore_index=True)


def methods_table(rows: pd.DataFrame, metrics: Sequence[str] = ("dsc", "sens", "hd95")) -> pd.DataFrame:
    """One line per (method, modality): the mean per-patient metric, mean ± sample std (ddof 1) over seeds.

    Columns: ``seeds``, then per metric its mean over seeds and (when more than one seed)
    ``<metric>_std``. Methods keep the order in which they first appear in ``rows``.
    """
    per_seed = rows.groupby(["method", "modality", "seed"], sort=False)[list(metrics)].mean()
    grouped = per_seed.groupby(level=["method", "modality"], sort=False)
    table = grouped.mean()
    stds = grouped.std(ddof=1)  # sample std over seeds
    for metric in metrics:
        table[f"{metric}_std"] = stds[metric]
    table.insert(0, "seeds", grouped.size())
    return table[["seeds"] + [c for m in metrics for c in (m, f"{m}_std")]]


def plot_methods_dsc(rows: pd.DataFrame, title: str = "", colours: Mapping[str, str] | None = None) -> plt.Figure:
    """One panel per modality: a bar per method (mean per-patient DSC) with every patient as a dot.

    A panel shows only the methods with results for its modality (``fused`` / ``<m> only``
    rows of the dual-encoder baselines get their own panels), and a method keeps its colour
    in every panel and in :func:`plot_val_curves` of the same methods (both use
    :func:`workbench.viz.style.method_colours` in the order the methods first appear; pass
    ``colours`` to fix them across other figures). With several seeds a patient has one dot
    per seed; the bar is the mean of all dots. The first method is the reference, drawn as a
    dashed line across its panels.
    """
    modalities = list(dict.fromkeys(rows["modality"]))
    methods = list(dict.fromkeys(rows["method"]))
    colours = method_colours(methods, colours)
    present = {m: [x for x in methods if ((rows["modality"] == m) & (rows["method"] == x)).any()] for m in modalities}
    counts = [len(present[m]) for m in modalities]
    width = min(26.0, max(5.0, 0.62 * sum(counts) + 1.2 * len(modalities)))
    fig, axes = plt.subplots(
        1, len(modalities), figsize=(width, 4.4), squeeze=False, sharey=True, gridspec_kw={"width_ratios": counts}
    )
    rng = np.random.default_rng(0)  # horizontal jitter of the dots only
    for ax, modality in zip(axes[0], modalities):
        sub = rows[rows["modality"] == modality]
        shown = present[modality]
        for i, method in enumerate(shown):
            values = sub.loc[sub["method"] == method, "dsc"].to_numpy(dtype=float)
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            colour = colours[method]
            ax.bar(i, np.nan_to_num(mean), color=colour, alpha=0.45, edgecolor=colour)
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=10, color=colour, zorder=3)
            if not np.isnan(mean):
                ax.text(i, 0.02, f"{mean:.3f}", ha="center", fontsize=8, fontweight="bold")
            if method == methods[0] and not np.isnan(mean):
                ax.axhline(mean, color="grey", ls="--", lw=0.8)
        ax.set_xticks(np.arange(len(shown)), shown, rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(shown) - 0.4)
        ax.set_title(modality)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("per-patient DSC (bar: mean)")
    fig.suptitle(title or f"methods side by side (dashed: {methods[0]})")
    fig.tight_layout()
    return fig


def plot_val_curves(runs: Mapping[str, str | Path], colours: Mapping[str, str] | None = None) -> plt.Figure:
    """The per-epoch DSC that steered each run (``val`` events: validation patients by default),
    one panel per modality, one line per run in its method's colour (the colours of
    :func:`plot_methods_dsc` for the same methods in the same order; see ``colours`` there)."""
    curves = {label: read_events(run_dir, "val") for label, run_dir in runs.items()}
    colours = method_colours(curves, colours)
    modalities = list(dict.fromkeys(m for records in curves.values() for r in records for m in r["dsc"]))
    if not modalities:
        raise ConfigError("plot_val_curves: no run has 'val' events")
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.0 * len(modalities), 3.6), squeeze=False, sharey=True)
    for ax, modality in zip(axes[0], modalities):
        for label, records in curves.items():
            points = [(r["epoch"], r["dsc"][modality]) for r in records if modality in r["dsc"]]
            if points:
                ax.plot(*zip(*points), marker="o", ms=2.5, label=label, color=colours[label])
        ax.set_title(modality)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(0, 1)
    labels = {steering_label(run_dir) for run_dir in runs.values()}
    axes[0, 0].set_ylabel("mean per-patient DSC\n" + "; ".join(sorted(labels)), fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
