"""The grid's tables and the files in OUT: one :class:`ResultTable` per dataset and labeled
fraction in the papers' layout (``mean ± std [CI]`` per method and modality, the papers' values,
and each row's paired DSC test against the reference row), the claimed orders decided on our runs
(:func:`decide_claims`), and :func:`tabulate`, which writes ``per_patient.csv``, ``cells.csv``,
``claims.csv``, ``tables.md``, ``tables.html`` and the plots (statistics: :mod:`workbench.stats`).

Why one long module: the result table, its comparisons and claims, and the files they are
written to share one row layout; each function is short.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

from workbench.reproduce.grid import Grid, GridDataset, GridMethod, parse_claim
from workbench.reproduce.paper import PAPER_LABEL, PaperTable, load_paper_values
from workbench.reproduce.plots import plot_dsc_vs_labeled
from workbench.reproduce.results import TABLE_METRICS, _modality_header, _per_seed, _Scores, _stamped, _with_stamp
from workbench.stats import (
    TEST_FEEDBACK_STAMP,
    PairedResult,
    ProtocolCard,
    bootstrap_ci,
    decide,
    minimal_detectable_difference,
    sample_std,
)

if TYPE_CHECKING:
    from workbench.reproduce.runner import GridReport

__all__ = ["ResultTable", "results_tables", "decide_claims", "claims_markdown", "claims_html", "tabulate"]

#: the fields of a comparison: pairs, mean difference, p-value, verdict text, minimal detectable difference
COMPARISON_FIELDS = ("pairs", "diff", "p", "verdict", "mdd")


def _comparison_values(result: PairedResult, expected: str) -> list[Any]:
    """The :data:`COMPARISON_FIELDS` of one paired result (verdict on ``expected``)."""
    verdict = decide(result, expected).text if result.n else "no pairs"  # type: ignore[arg-type]
    return [result.n, result.mean_diff, result.p, verdict, minimal_detectable_difference(result.diffs)]


def _signed(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.3f}"


def _plain(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}"


@dataclass
class ResultTable:
    """One table of the paper's layout: a dataset at a labeled fraction.

    ``mean`` and ``std`` have the row labels as index and (modality, metric header) columns
    (``std``: sample std over seeds, ddof 1); ``ci_low`` / ``ci_high`` the same layout, the 95%
    bootstrap CI of the mean over patients x seeds; ``seeds`` counts our runs per row (0 for the
    paper's rows); ``paper_rows`` names the rows holding published values. ``comparison`` holds,
    for each of our rows other than ``reference``, the paired DSC test against ``reference``:
    columns (modality, field) with the fields of :data:`COMPARISON_FIELDS` (diff = row −
    reference; the verdict is on "row > reference"). ``stamp`` is the test-feedback stamp when a
    run of this table was steered by its test patients.
    """

    dataset: str
    labeled: float
    mean: pd.DataFrame
    std: pd.DataFrame
    seeds: pd.Series
    paper_rows: dict[str, str]  # row label -> citation
    title: str = ""
    ci_low: pd.DataFrame | None = None
    ci_high: pd.DataFrame | None = None
    reference: str | None = None
    comparison: pd.DataFrame | None = None
    stamp: str | None = None

    def formatted(self) -> pd.DataFrame:
        """Strings ``mean ± std [CI low, CI high]`` (one seed: ``mean [CI]``; paper: 4 decimals as
        printed; missing: –)."""
        text = pd.DataFrame(index=self.mean.index, columns=self.mean.columns, dtype=object)
        for label in self.mean.index:
            for col in self.mean.columns:
                text.at[label, col] = self._cell_text(label, col)
        text.insert(
            0,
            ("", "seeds"),
            [str(self.seeds[label]) if label not in self.paper_rows else "–" for label in self.mean.index],
        )
        text.columns = pd.MultiIndex.from_tuples(list(text.columns))
        text.index.name = "method"
        return text

    def _cell_text(self, label: str, col: Any) -> str:
        """One cell of :meth:`formatted`."""
        value, spread = self.mean.at[label, col], self.std.at[label, col]
        if pd.isna(value):
            return "–"
        if label in self.paper_rows:
            return f"{value:.4f}"
        several = self.seeds[label] > 1 and not pd.isna(spread)
        cell = f"{value:.3f} ± {spread:.3f}" if several else f"{value:.3f}"
        if self.ci_low is not None and self.ci_high is not None:
            low, high = self.ci_low.at[label, col], self.ci_high.at[label, col]
            if not (pd.isna(low) or pd.isna(high)):
                cell += f" [{low:.2f}, {high:.2f}]"
        return cell

    @property
    def comparison_title(self) -> str:
        return _with_stamp(
            f"vs {self.reference}: paired DSC over matched test patient x seed pairs, "
            f'Δ = row − {self.reference}, verdict on "row > {self.reference}" '
            "(Wilcoxon, alpha 0.05); MDD: the minimal detectable Δ at 80% power",
            bool(self.stamp),
        )

    def comparison_formatted(self) -> pd.DataFrame | None:
        """The comparison as strings: pairs, then per modality Δ DSC, verdict, MDD (None without one)."""
        if self.comparison is None or self.comparison.empty:
            return None
        modalities = list(dict.fromkeys(m for m, _ in self.comparison.columns))
        text = pd.DataFrame(index=self.comparison.index, dtype=object)
        text.index.name = "method"
        text[("", "pairs")] = [
            " / ".join(dict.fromkeys(str(int(self.comparison.at[label, (m, "pairs")])) for m in modalities))
            for label in self.comparison.index
        ]
        for m in modalities:
            text[(m, "Δ DSC")] = [_signed(v) for v in self.comparison[(m, "diff")]]
            text[(m, "verdict")] = list(self.comparison[(m, "verdict")])
            text[(m, "MDD")] = [_plain(v) for v in self.comparison[(m, "mdd")]]
        text.columns = pd.MultiIndex.from_tuples(list(text.columns))
        return text

    def to_markdown(self) -> str:
        """The table, then (when there is one) the comparison against the reference row."""
        table = self.formatted()
        headers = ["method"] + [f"{m} {metric}".strip() for m, metric in table.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for label, row in table.iterrows():
            cells = list(row)
            if label in self.paper_rows:
                cells = [c if c == "–" else f"*{c}*" for c in cells]
                label = f"↳ *{label}*"
            lines.append("| " + " | ".join([str(label)] + cells) + " |")
        comparison = self.comparison_formatted()
        if comparison is not None:
            headers = ["method"] + [f"{m} {metric}".strip() for m, metric in comparison.columns]
            lines += [
                "",
                f"*{self.comparison_title}*",
                "",
                "| " + " | ".join(headers) + " |",
                "|" + "---|" * len(headers),
            ]
            lines += ["| " + " | ".join([str(label)] + list(row)) + " |" for label, row in comparison.iterrows()]
        return "\n".join(lines)

    def styler(self) -> Any:
        """A pandas Styler of :meth:`formatted`, the paper's rows grey and italic."""
        table = self.formatted()
        paper = set(self.paper_rows)

        def style(row: pd.Series) -> list[str]:
            css = "color: #666; font-style: italic" if row.name in paper else ""
            return [css] * len(row)

        return table.style.apply(style, axis=1).set_caption(self.title)

    def comparison_styler(self) -> Any:
        """A pandas Styler of :meth:`comparison_formatted` (None without a comparison)."""
        comparison = self.comparison_formatted()
        return None if comparison is None else comparison.style.set_caption(self.comparison_title)

    def to_html(self) -> str:
        """The table, then (when there is one) the comparison against the reference row."""
        comparison = self.comparison_styler()
        return self.styler().to_html() + ("" if comparison is None else comparison.to_html())


# ------------------------------------------------------------------------------- result tables
def results_tables(rows: pd.DataFrame, grid: Grid, papers: Mapping[str, PaperTable] | None = None) -> list[ResultTable]:
    """One :class:`ResultTable` per dataset and labeled fraction with at least one finished run.

    Our rows: mean ± sample std (ddof 1) over seeds of each run's mean over patients, and the 95%
    bootstrap CI (BCa) of the mean over the per-(patient, seed) scores (none from a single score).
    Below a row with a ``paper`` reference, the published value in a row marked "paper (real
    data)" (only for the modalities we have columns for). Each table's ``comparison`` tests every other row of ours
    against the grid's reference row on DSC (:func:`workbench.stats.paired_test`, matched by
    test patient and seed).
    """
    papers = load_paper_values() if papers is None else papers
    per_seed = _per_seed(rows) if len(rows) else None
    scores = _Scores(rows)
    tables = []
    for dataset in grid.datasets:
        modalities = list(dict.fromkeys(rows.loc[rows["dataset"] == dataset.name, "modality"])) if len(rows) else []
        if not modalities:  # no results of ours for this dataset: no table
            continue
        for fraction in grid.all_fractions():
            table = _result_table(rows, grid, dataset, fraction, modalities, per_seed, scores, papers)
            if table is not None:
                tables.append(table)
    return tables


def _result_table(
    rows: pd.DataFrame,
    grid: Grid,
    dataset: GridDataset,
    fraction: float,
    modalities: list[str],
    per_seed: pd.DataFrame | None,
    scores: _Scores,
    papers: Mapping[str, PaperTable],
) -> ResultTable | None:
    """The table of one dataset at one fraction; None when none of our rows has a run."""
    columns = pd.MultiIndex.from_tuples(
        [(_modality_header(m), header) for m in modalities for _, header in TABLE_METRICS]
    )
    labels, means, stds, lows, highs, seeds, paper_rows = [], [], [], [], [], [], {}
    ours = []
    for method in grid.methods:
        if fraction not in grid.fractions(method):
            continue
        mean_row, std_row, low_row, high_row, n = _our_row(dataset, method, fraction, modalities, per_seed, scores)
        labels.append(method.label)
        ours.append(method.label)
        means.append(mean_row)
        stds.append(std_row)
        lows.append(low_row)
        highs.append(high_row)
        seeds.append(n)
        paper = _paper_row(dataset, method, fraction, modalities, papers)
        if paper is not None and paper[0] not in labels:  # shown once
            label, values, citation = paper
            labels.append(label)
            means.append(values)
            for block in (stds, lows, highs):
                block.append([math.nan] * len(columns))
            seeds.append(0)
            paper_rows[label] = citation
    if not any(s > 0 for s in seeds):  # nothing of ours (published values alone are no table)
        return None
    reference = grid.reference_label
    comparison = _comparison(dataset, fraction, modalities, reference, ours, scores)
    stamped = _stamped(rows[(rows["dataset"] == dataset.name) & (rows["labeled"] == fraction)])
    frame = partial(pd.DataFrame, index=labels, columns=columns)
    return ResultTable(
        dataset.name,
        fraction,
        frame(means),
        frame(stds),
        pd.Series(seeds, index=labels),
        paper_rows,
        title=_with_stamp(f"{dataset.name}, {fraction * 100:g}% labeled", stamped),
        ci_low=frame(lows),
        ci_high=frame(highs),
        reference=reference if comparison is not None else None,
        comparison=comparison,
        stamp=TEST_FEEDBACK_STAMP if stamped else None,
    )


def _our_row(
    dataset: GridDataset,
    method: GridMethod,
    fraction: float,
    modalities: list[str],
    per_seed: pd.DataFrame | None,
    scores: _Scores,
) -> tuple[list, list, list, list, int]:
    """One row of ours: per modality and metric the mean and sample std over seeds, the bootstrap
    CI of the per-(patient, seed) scores; and the most seeds any column has."""
    mean_row, std_row, low_row, high_row, n = [], [], [], [], 0
    for m in modalities:
        for metric, _ in TABLE_METRICS:
            values = pd.Series(dtype=float)
            if per_seed is not None:
                key = (dataset.name, method.label, fraction, m)
                try:
                    values = per_seed[metric].xs(key, level=[0, 1, 2, 3]).dropna()
                except KeyError:
                    pass
            n = max(n, len(values))
            mean_row.append(values.mean() if len(values) else math.nan)
            std_row.append(sample_std(values))
            cell_scores = scores.values(dataset.name, method.label, fraction, m, metric)
            # one score has no spread to resample: no interval rather than a zero-width one
            low, high = bootstrap_ci(cell_scores) if len(cell_scores) >= 2 else (math.nan, math.nan)
            low_row.append(low)
            high_row.append(high)
    return mean_row, std_row, low_row, high_row, n


def _paper_row(
    dataset: GridDataset, method: GridMethod, fraction: float, modalities: list[str], papers: Mapping[str, PaperTable]
) -> tuple[str, list[float], str] | None:
    """The published row a method cites at this fraction: (label, values, citation); None when it
    cites none or the paper has none of our modalities."""
    if method.paper is None:
        return None
    table_id, paper_row = method.paper
    published = papers[table_id].get(dataset.paper, fraction, paper_row)
    if not any(m in published for m in modalities):
        return None
    values = [published[m][i] if m in published else math.nan for m in modalities for i in range(len(TABLE_METRICS))]
    return f'{PAPER_LABEL}: {papers[table_id].table} "{paper_row}"', values, papers[table_id].citation


def _comparison(
    dataset: GridDataset, fraction: float, modalities: list[str], reference: str, ours: list[str], scores: _Scores
) -> pd.DataFrame | None:
    """Each of our other rows against ``reference`` (None without the reference or another row)."""
    others = [label for label in ours if label != reference]
    if reference not in ours or not others:
        return None
    return pd.DataFrame(
        [
            [
                value
                for m in modalities
                for value in _comparison_values(scores.paired(dataset.name, reference, label, fraction, m), ">")
            ]
            for label in others
        ],
        index=others,
        columns=pd.MultiIndex.from_tuples([(_modality_header(m), f) for m in modalities for f in COMPARISON_FIELDS]),
    )


# ------------------------------------------------------------------------------------ claims
#: the columns of :func:`decide_claims` (and claims.csv)
CLAIM_COLUMNS = (
    "dataset",
    "labeled",
    "claim",
    "modality",
    "left",
    "op",
    "right",
    "n",
    "diff",
    "p",
    "verdict",
    "mdd",
    "stamp",
)


def decide_claims(rows: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Each claimed order of ``grid.claims`` decided on our runs, on DSC.

    One row per adjacent pair of a claim ("a < b < c": a < b and b < c), dataset, labeled
    fraction both rows run at, and modality: ``n`` matched (test patient, seed) pairs, ``diff``
    the mean of left − right, ``p`` the two-sided Wilcoxon signed-rank p-value, ``verdict`` on
    "left op right" (holds / reversed / not decided (p); "no pairs" when a side has no finished
    run), ``mdd`` the minimal detectable difference, and ``stamp`` when a run of the pair was
    steered by its test patients. Columns: :data:`CLAIM_COLUMNS`.
    """
    scores = _Scores(rows)
    methods = {m.label: m for m in grid.methods}
    records = []
    for dataset in grid.datasets:
        in_dataset = rows[rows["dataset"] == dataset.name] if len(rows) else rows
        modalities = list(dict.fromkeys(in_dataset["modality"]))
        for claim in grid.claims:
            for left, op, right in parse_claim(claim):
                common = set(grid.fractions(methods[left])) & set(grid.fractions(methods[right]))
                for fraction in sorted(common):
                    pair_rows = in_dataset[
                        (in_dataset["labeled"] == fraction) & in_dataset["method"].isin([left, right])
                    ]
                    for m in modalities:
                        result = scores.paired(dataset.name, right, left, fraction, m)  # diffs: left − right
                        n, diff, p, verdict, mdd = _comparison_values(result, op)
                        records.append(
                            dict(
                                zip(
                                    CLAIM_COLUMNS,
                                    (
                                        dataset.name,
                                        fraction,
                                        claim,
                                        m,
                                        left,
                                        op,
                                        right,
                                        n,
                                        diff,
                                        p,
                                        verdict,
                                        mdd,
                                        TEST_FEEDBACK_STAMP if _stamped(pair_rows) else "",
                                    ),
                                )
                            )
                        )
    return pd.DataFrame(records, columns=list(CLAIM_COLUMNS))


def _claims_title(claims: pd.DataFrame) -> str:
    return _with_stamp("Claims", bool((claims["stamp"] != "").any()) if len(claims) else False)


CLAIMS_NOTE = (
    "Each claimed order of the grid, per adjacent pair, on DSC over matched test patient x seed pairs: "
    "Δ = left − right, two-sided Wilcoxon signed-rank, alpha 0.05, no correction for multiple "
    "comparisons; MDD: the minimal detectable Δ at 80% power (optimistic: seeds share patients)."
)


def _claims_text(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims as display strings."""
    return pd.DataFrame(
        {
            "dataset": claims["dataset"],
            "labeled": [f"{f * 100:g}%" for f in claims["labeled"]],
            "claim": [f"{a} {op} {b}" for a, op, b in zip(claims["left"], claims["op"], claims["right"])],
            "modality": [_modality_header(m) for m in claims["modality"]],
            "pairs": claims["n"].astype(str),
            "Δ DSC": [_signed(v) for v in claims["diff"]],
            "verdict": claims["verdict"],
            "MDD": [_plain(v) for v in claims["mdd"]],
        }
    )


def claims_markdown(claims: pd.DataFrame) -> str:
    """The "Claims" section of tables.md."""
    text = _claims_text(claims)
    lines = [
        f"## {_claims_title(claims)}",
        "",
        CLAIMS_NOTE,
        "",
        "| " + " | ".join(text.columns) + " |",
        "|" + "---|" * len(text.columns),
    ]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in text.itertuples(index=False)])


def claims_html(claims: pd.DataFrame) -> str:
    """The "Claims" section of tables.html."""
    table = _claims_text(claims).style.hide(axis="index").to_html()
    return f"<h2>{html.escape(_claims_title(claims))}</h2><p>{html.escape(CLAIMS_NOTE)}</p>{table}"


# ------------------------------------------------------------------------------- files in OUT
VALUES_TEXT = (
    "Each value is the mean over seeds ± the sample std over seeds (ddof 1) of one run's mean "
    "per-patient 3D metric on the test patients, and in brackets the 95% bootstrap CI (BCa) of the "
    "mean over patients x seeds (one seed: mean and CI only)."
)
HTML_STYLE = (
    "<style>body{font-family:sans-serif} table{border-collapse:collapse;margin:1em 0} "
    "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right} caption{font-weight:bold}</style>"
)


def tabulate(report: GridReport) -> list[Path]:
    """Write ``per_patient.csv``, ``cells.csv``, ``tables.md``, ``tables.html``, ``claims.csv``
    (when the grid has claims) and one ``dsc_vs_labeled_<dataset>.png`` per dataset with results
    into ``report.out`` (layout: :mod:`workbench.reproduce`)."""
    import matplotlib.pyplot as plt

    from workbench.viz.export import save_figure

    out, grid = report.out, report.grid
    files = [out / "per_patient.csv", out / "cells.csv"]
    report.rows.to_csv(files[0], index=False)
    _cells_frame(report).to_csv(files[1], index=False)
    claims = report.claims if report.claims is not None else decide_claims(report.rows, grid)
    if grid.claims:
        files.append(out / "claims.csv")
        claims.to_csv(files[-1], index=False)
    card = report.card
    files.append(out / "tables.md")
    files[-1].write_text("\n".join(_markdown(report, claims, card)).rstrip() + "\n", encoding="utf-8")
    files.append(out / "tables.html")
    files[-1].write_text(
        f"<html><head><meta charset='utf-8'>{HTML_STYLE}</head><body>\n"
        + "\n".join(_html(report, claims, card))
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    for dataset in grid.datasets:
        if (report.rows["dataset"] == dataset.name).any():
            fig = plot_dsc_vs_labeled(report.rows, dataset.name, grid)
            files.append(save_figure(fig, out / f"dsc_vs_labeled_{dataset.name}"))
            plt.close(fig)
    return files


def _cells_frame(report: GridReport) -> pd.DataFrame:
    """cells.csv: each cell's status, time and error."""
    return pd.DataFrame(
        [
            {
                "dataset": c.dataset.name,
                "method": c.method.label,
                "labeled": c.labeled,
                "seed": c.seed,
                "run_dir": str(c.run_dir),
                "status": report.results[c.key].status,
                "seconds": round(report.results[c.key].seconds, 1),
                "error": report.results[c.key].error or "",
            }
            for c in report.cells
        ]
    )


def _counts_and_citations(report: GridReport) -> tuple[str, list[str]]:
    """The cells' status counts as text, and the citations of the tables' paper rows."""
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items())
    return counts, sorted({c for t in report.tables for c in t.paper_rows.values()})


def _markdown(report: GridReport, claims: pd.DataFrame, card: ProtocolCard) -> list[str]:
    """The lines of tables.md: title, card, what the values are, tables, claims, failed cells."""
    grid = report.grid
    counts, citations = _counts_and_citations(report)
    settings = ", ".join(f"{k} {v}" for k, v in grid.settings.items())
    md = [f"# {_with_stamp(grid.name, bool(card.stamp))}", ""] + ([grid.description, ""] if grid.description else [])
    md += [
        card.to_markdown(),
        "",
        f"Grid `{grid.path.name}`; shared settings: {settings or 'defaults'}; seeds {grid.seeds}. "
        f"Cells: {counts}. {VALUES_TEXT}",
    ]
    if citations:
        md += [
            "",
            f"Rows marked *{PAPER_LABEL}* are published numbers on the real datasets, not runs of ours: "
            + "; ".join(citations)
            + ".",
        ]
    md += [""] + [t.to_markdown() + "\n" for t in report.tables]
    if grid.claims:
        md += [claims_markdown(claims) + "\n"]
    if report.failures:
        md += ["## Failed cells", ""] + [f"- `{c.key}`: {r.error}" for c, r in report.failures]
    return md


def _html(report: GridReport, claims: pd.DataFrame, card: ProtocolCard) -> list[str]:
    """The body parts of tables.html, in the order of :func:`_markdown`."""
    grid = report.grid
    counts, citations = _counts_and_citations(report)
    parts = [
        f"<h1>{_with_stamp(grid.name, bool(card.stamp))}</h1>",
        f"<p>{grid.description}</p>",
        card.to_html(),
        f"<p>Cells: {counts}. {VALUES_TEXT}</p>",
    ]
    if citations:
        parts.append(f"<p>Grey italic rows ({PAPER_LABEL}): {'; '.join(citations)}.</p>")
    parts += [t.to_html() for t in report.tables]
    if grid.claims:
        parts.append(claims_html(claims))
    if report.failures:
        parts += (
            ["<h2>Failed cells</h2><ul>"]
            + [f"<li><code>{c.key}</code>: {r.error}</li>" for c, r in report.failures]
            + ["</ul>"]
        )
    return parts
