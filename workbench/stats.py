"""The statistics behind every results table: spread, confidence intervals, paired tests, protocol cards.

One definition of each number, used everywhere in the workbench:

* **std**: the sample standard deviation over seeds (ddof 1), :func:`sample_std`.
* **CI**: the 95% bootstrap confidence interval (BCa) of the mean of the per-(patient, seed)
  scores, :func:`bootstrap_ci`.
* **paired test**: the two-sided Wilcoxon signed-rank test over matched (patient, seed) pairs,
  :func:`paired_test`, read as a verdict on a claimed order with :func:`decide` (alpha 0.05, no
  correction for multiple comparisons).
* **minimal detectable difference**: the smallest mean paired difference a cohort can detect,
  :func:`minimal_detectable_difference`.
* **protocol card**: how the numbers of a table were made, :func:`protocol_card`.

Example::

    >>> sample_std([1.0, 2.0, 3.0])
    1.0
    >>> result = paired_test([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0, 0.55])
    >>> result.n, round(result.mean_diff, 3), str(decide(result, ">"))
    (6, 0.258, 'holds (p = 0.031)')
"""

from __future__ import annotations

import html
import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

__all__ = [
    "TEST_FEEDBACK_STAMP",
    "NOT_RECORDED",
    "STD_DEFINITION",
    "CI_DEFINITION",
    "TEST_DEFINITION",
    "PairedResult",
    "Verdict",
    "ProtocolCard",
    "sample_std",
    "bootstrap_ci",
    "paired_test",
    "decide",
    "format_p",
    "minimal_detectable_difference",
    "protocol_card",
]

#: the stamp of every card, table and plot that a run steered by its test patients reaches
TEST_FEEDBACK_STAMP = "test feedback (paper protocol)"
#: a protocol field of a run whose metrics.json has no ``protocol``
NOT_RECORDED = "not recorded (run made before protocol cards)"
STD_DEFINITION = "sample std over seeds, ddof 1"
CI_DEFINITION = "95% bootstrap CI (BCa) of the mean over patients x seeds"
TEST_DEFINITION = (
    "two-sided Wilcoxon signed-rank over matched patient x seed pairs, alpha 0.05, "
    "no correction for multiple comparisons"
)


def _finite(values: Iterable[float]) -> np.ndarray:
    """The values as a flat float64 array, NaN dropped."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    return array[~np.isnan(array)]


# --------------------------------------------------------------------------------- spread and CI
def sample_std(values: Iterable[float]) -> float:
    """The sample standard deviation (ddof 1) of ``values``, NaN ignored.

    ``sqrt(sum((x - mean)^2) / (n - 1))``: the project's one std definition (std over seeds in
    every table and error bar). NaN for fewer than 2 values.
    """
    x = _finite(values)
    return float(np.std(x, ddof=1)) if len(x) >= 2 else math.nan


def _bootstrap_keyword() -> str:
    """The keyword that seeds :func:`scipy.stats.bootstrap`: ``rng`` (scipy >= 1.15) or ``random_state``."""
    from scipy import stats

    return "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def bootstrap_ci(
    values: Iterable[float], *, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """The bootstrap confidence interval of the mean of ``values``.

    ``values`` are the per-(patient, seed) scores of one table cell, flattened (NaN dropped).
    :func:`scipy.stats.bootstrap` resamples them with replacement ``n_resamples`` times and
    returns the BCa (bias-corrected and accelerated) interval of the resampled means; where
    BCa is undefined (NaN, e.g. for nearly degenerate data) the percentile interval of the same
    resamples is returned instead. Deterministic: the resamples come from
    ``np.random.default_rng(seed)``.

    Args:
        values: scores, any shape.
        confidence: the interval's coverage, 0.95 for a 95% CI.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        ``(low, high)``; ``(v, v)`` when there is one value or all values equal ``v``;
        ``(nan, nan)`` when there is none.
    """
    from scipy import stats

    x = _finite(values)
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    keyword = _bootstrap_keyword()
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # a degenerate BCa warns and gives NaN: we fall back
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (x,),
                np.mean,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                **{keyword: np.random.default_rng(seed)},
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            return low, high
    return math.nan, math.nan


# ---------------------------------------------------------------------------------- paired tests
@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of ``b`` against ``a``.

    Attributes:
        n: matched pairs (both values present).
        mean_diff: mean of ``b - a`` over the pairs.
        p: two-sided Wilcoxon signed-rank p-value; NaN when the test cannot decide
            (fewer than 2 pairs, or every difference zero).
        diffs: the differences ``b - a``.
    """

    n: int
    mean_diff: float
    p: float
    diffs: tuple[float, ...] = field(default=(), repr=False)


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedResult:
    """Two-sided Wilcoxon signed-rank test of ``b - a`` over matched pairs.

    The caller aligns the two sequences (here: by test patient and seed, so ``a[i]`` and ``b[i]``
    are the same patient scored by two methods trained with the same seed). Pairs with a NaN on
    either side are dropped; zero differences are dropped by the test itself (Wilcoxon's
    ``zero_method="wilcox"``) but count in ``n`` and the mean. The p-value is scipy's
    ``method="auto"``, deterministic: the exact null distribution for up to 50 pairs without ties
    or zeros (5 pairs all positive: p = 2/32 = 0.0625), all 2^n sign flips for up to 13 pairs with
    ties or zeros, the normal approximation otherwise.

    Raises:
        ValueError: when ``a`` and ``b`` differ in length.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"paired_test: {len(x)} values against {len(y)}; pairs must be aligned")
    keep = ~(np.isnan(x) | np.isnan(y))
    diffs = y[keep] - x[keep]
    n = len(diffs)
    mean_diff = float(diffs.mean()) if n else math.nan
    p = math.nan
    if n >= 2 and np.any(diffs != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedResult(n, mean_diff, p, tuple(float(d) for d in diffs))


def format_p(p: float) -> str:
    """``p = 0.031`` (2 significant digits), ``p < 0.001``, or ``p = n/a`` for NaN."""
    if math.isnan(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2g}"


@dataclass(frozen=True)
class Verdict:
    """The verdict on a claimed order: ``outcome`` is "holds", "reversed" or "not decided".

    ``str(verdict)`` is the outcome with its p-value: ``holds (p = 0.003)``.
    """

    outcome: Literal["holds", "reversed", "not decided"]
    p: float

    @property
    def text(self) -> str:
        return f"{self.outcome} ({format_p(self.p)})"

    def __str__(self) -> str:
        return self.text


def decide(result: PairedResult, expected: Literal["<", ">"], alpha: float = 0.05) -> Verdict:
    """The verdict on the claim "b ``expected`` a" (``">"``: b is larger) from a :func:`paired_test`.

    "holds" when ``p < alpha`` and the **mean** difference ``b - a`` has the claimed sign,
    "reversed" when ``p < alpha`` and it has the other sign, "not decided" otherwise (p >= alpha,
    or no p: too few pairs or no difference).
    """
    if expected not in ("<", ">"):
        raise ValueError(f"expected {expected!r}: use '<' or '>'")
    if math.isnan(result.p) or result.p >= alpha or result.mean_diff == 0 or math.isnan(result.mean_diff):
        return Verdict("not decided", result.p)
    larger = result.mean_diff > 0
    return Verdict("holds" if larger == (expected == ">") else "reversed", result.p)


def minimal_detectable_difference(diffs: Iterable[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean paired difference the cohort can detect.

    ``(z_{1 - alpha/2} + z_power) * sd(diffs, ddof 1) / sqrt(n)``: the normal-approximation
    formula of a two-sided paired test at level ``alpha`` with the given power (0.05, 0.8:
    2.80 standard errors). It approximates the Wilcoxon test (slightly less efficient than the
    t-test on normal data), and it treats the patients x seeds pairs as independent although
    the seeds share patients, so it is optimistic: the true detectable difference is larger.
    NaN for fewer than 2 differences.
    """
    from scipy import stats

    x = _finite(diffs)
    if len(x) < 2:
        return math.nan
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * np.std(x, ddof=1) / math.sqrt(len(x)))


# --------------------------------------------------------------------------------- protocol card
SELECTION_TEXT = {
    "val": "validation patients (selection val)",
    "train": "training accuracy on the labeled patients (selection train)",
    "test": f"the test patients (selection test): {TEST_FEEDBACK_STAMP}",
}
UNLABELED_TEXT = {
    "body": "label-free: slices whose body cross-section is large enough (body)",
    "all": "every slice (all)",
    "label": "the paper's filter, which uses the labels (label)",
}
TEST_SLICES_TEXT = {
    "all": "every slice of the test volumes (all)",
    "tumour": "tumour slices only, the paper's protocol (tumour)",
}


@dataclass
class ProtocolCard:
    """How the numbers of a table were made: ``entries`` are (field, value) lines; ``stamp`` is
    :data:`TEST_FEEDBACK_STAMP` when a run was steered by its test patients, else None."""

    entries: list[tuple[str, str]]
    stamp: str | None = None

    @property
    def title(self) -> str:
        return "Protocol card" + (f" ({self.stamp})" if self.stamp else "")

    def lines(self) -> list[str]:
        """``field: value`` per entry, the stamp first when there is one."""
        return ([f"STAMP: {self.stamp}"] if self.stamp else []) + [f"{k}: {v}" for k, v in self.entries]

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.stamp:
            lines += [f"**{self.stamp}**: the test patients steered training; these are not held-out numbers.", ""]
        return "\n".join(lines + [f"- **{k}**: {v}" for k, v in self.entries])

    def to_html(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.entries
        )
        stamp = (
            f"<p><strong>{html.escape(self.stamp)}</strong>: the test patients steered training; these are "
            "not held-out numbers.</p>"
            if self.stamp
            else ""
        )
        return f"<h2>{html.escape(self.title)}</h2>{stamp}<table class='protocol'>{rows}</table>"


def _data_text(data: Any) -> str:
    if not isinstance(data, Mapping):
        return NOT_RECORDED
    builtin = data.get("builtin")
    if isinstance(builtin, Mapping):
        where = f"built-in {builtin.get('kind')}, {builtin.get('patients')} patients, data seed {builtin.get('seed')}"
        if builtin.get("difficulty"):
            where += f", difficulty {builtin['difficulty']}"
    else:
        where = f"folder {data.get('folder')} (format {data.get('format')})"
    digest = data.get("sha256")
    return f"{where}, sha256 {str(digest)[:12]}" if digest else where


def _patients_text(patients: Any) -> str:
    if not isinstance(patients, Mapping):
        return NOT_RECORDED
    return " / ".join(f"{patients.get(k, '?')} {k}" for k in ("labeled", "unlabeled", "val", "test"))


def _gloss(table: Mapping[str, str], value: Any) -> str:
    return NOT_RECORDED if value is None else table.get(str(value), str(value))


def protocol_card(protocols: Sequence[Mapping[str, Any] | None], n_seeds: int) -> ProtocolCard:
    """The protocol card of a table from its runs' ``protocol`` dicts (metrics.json).

    Each per-run field (data and its hash, split seed, patients per set, what steered training,
    unlabeled slices, test slices, empty-mask rule) shows the distinct values of the runs,
    joined by "; ". A run without a protocol (None or empty: made before protocol cards)
    contributes :data:`NOT_RECORDED`. The fixed definitions (std, CI, paired test) and the number
    of seeds follow. The card is stamped :data:`TEST_FEEDBACK_STAMP` when any run has
    ``selection == "test"``.
    """
    fields = (
        "data",
        "split seed",
        "patients per set",
        "what steered training",
        "unlabeled slices",
        "test slices",
        "empty-mask rule",
    )
    per_run: dict[str, list[str]] = {key: [] for key in fields}
    stamped = False
    for protocol in protocols:
        if not protocol:
            for values in per_run.values():
                values.append(NOT_RECORDED)
            continue
        stamped = stamped or protocol.get("selection") == "test"
        per_run["data"].append(_data_text(protocol.get("data")))
        split_seed = protocol.get("split_seed")
        per_run["split seed"].append(NOT_RECORDED if split_seed is None else str(split_seed))
        per_run["patients per set"].append(_patients_text(protocol.get("patients")))
        per_run["what steered training"].append(_gloss(SELECTION_TEXT, protocol.get("selection")))
        per_run["unlabeled slices"].append(_gloss(UNLABELED_TEXT, protocol.get("unlabeled_slices")))
        per_run["test slices"].append(_gloss(TEST_SLICES_TEXT, protocol.get("test_slices")))
        rule = protocol.get("empty_mask_rule")
        per_run["empty-mask rule"].append(NOT_RECORDED if rule is None else str(rule))
    entries = [
        (key, "; ".join(dict.fromkeys(values)) if values else "no finished runs") for key, values in per_run.items()
    ]
    entries += [
        ("seeds", str(n_seeds)),
        ("std", STD_DEFINITION),
        ("CI", CI_DEFINITION),
        ("paired test", TEST_DEFINITION),
    ]
    return ProtocolCard(entries, TEST_FEEDBACK_STAMP if stamped else None)
