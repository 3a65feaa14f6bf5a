"""workbench.stats: sample std, bootstrap CI, Wilcoxon verdicts, detectable difference, protocol cards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special, stats

from workbench.stats import (
    CI_DEFINITION,
    NOT_RECORDED,
    STD_DEFINITION,
    TEST_DEFINITION,
    TEST_FEEDBACK_STAMP,
    PairedResult,
    bootstrap_ci,
    decide,
    format_p,
    minimal_detectable_difference,
    paired_test,
    protocol_card,
    sample_std,
)

SCORES = np.array([0.62, 0.71, 0.55, 0.80, 0.67, 0.59, 0.74, 0.49, 0.69, 0.77, 0.58, 0.66])


def protocol(**overrides):
    """A protocol dict as the Trainer writes it into metrics.json."""
    record = {
        "data": {
            "folder": "/data/out/data-brats-p40-s0",
            "format": "brats",
            "builtin": {"kind": "brats", "patients": 40, "seed": 0},
            "sha256": "0123abcd4567ef89" * 4,
        },
        "split_seed": 0,
        "patients": {"labeled": 3, "unlabeled": 25, "val": 4, "test": 8},
        "selection": "val",
        "unlabeled_slices": "body",
        "test_slices": "all",
        "empty_mask_rule": "both empty: DSC 1, HD95/ASD 0; one empty: DSC 0, HD95/ASD NaN (counted separately)",
        "stamp": None,
    }
    record.update(overrides)
    return record


# ------------------------------------------------------------------------------------ std
def test_sample_std_is_ddof_1():
    # mean 5, squared deviations 9 + 1 + 1 + 9 = 20, / (4 - 1)
    assert sample_std([2.0, 4.0, 6.0, 8.0]) == pytest.approx(math.sqrt(20 / 3))
    assert sample_std([0.2, 0.4]) == pytest.approx(math.sqrt(0.02))  # 0.1414, not ddof 0's 0.1
    assert sample_std([1.0, math.nan, 3.0]) == pytest.approx(math.sqrt(2))  # NaN ignored
    assert math.isnan(sample_std([0.7])) and math.isnan(sample_std([]))


# ------------------------------------------------------------------------------------- CI
def bca_by_hand(x: np.ndarray, n_resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """The BCa interval of the mean, written out (Efron & Tibshirani, ch. 14) with numpy, on resamples
    drawn as ``rng.integers(0, n, (n_resamples, n))`` from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_resamples, len(x)))].mean(axis=1)
    theta = x.mean()
    # bias correction: the normal quantile of the share of resampled means below the estimate (ties: half)
    z0 = special.ndtri(((means < theta).sum() + (means <= theta).sum()) / (2 * n_resamples))
    # acceleration from the jackknife means
    jack = np.array([np.delete(x, i).mean() for i in range(len(x))])
    d = jack.mean() - jack
    a = (d**3).sum() / (6 * ((d**2).sum()) ** 1.5)
    bounds = []
    for z_alpha in (special.ndtri((1 - confidence) / 2), special.ndtri((1 + confidence) / 2)):
        bounds.append(np.percentile(means, 100 * special.ndtr(z0 + (z0 + z_alpha) / (1 - a * (z0 + z_alpha)))))
    return float(bounds[0]), float(bounds[1])


def test_bootstrap_ci_matches_a_bca_written_out_with_the_same_draws():
    low, high = bootstrap_ci(SCORES, n_resamples=2000, seed=3)
    assert (low, high) == pytest.approx(bca_by_hand(SCORES, 2000, 3), abs=1e-12)


def test_bootstrap_ci_is_deterministic_and_contains_the_mean():
    first = bootstrap_ci(SCORES)
    assert bootstrap_ci(SCORES) == first and bootstrap_ci(list(SCORES), seed=0) == first
    assert bootstrap_ci(SCORES, seed=1) != first  # the seed is the only source of randomness
    low, high = first
    assert low < SCORES.mean() < high and SCORES.min() < low and high < SCORES.max()
    # scipy called directly with the same generator gives the same interval
    direct = stats.bootstrap((SCORES,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(0))
    assert first == pytest.approx((direct.confidence_interval.low, direct.confidence_interval.high), abs=1e-12)
    wider = bootstrap_ci(SCORES, confidence=0.99)
    assert wider[0] < low and high < wider[1]


def test_bootstrap_ci_of_small_and_degenerate_samples():
    # two values 0 and 1: the resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are the extremes
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([0.4, 0.4, 0.4]) == (0.4, 0.4)  # all equal: no spread
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.7, math.nan]) == (0.7, 0.7)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    low, high = bootstrap_ci([0.0, 0.0, 0.0, 0.0, 1.0])  # skewed: a finite interval inside [0, 1]
    assert 0.0 <= low < 0.2 < high <= 1.0


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("n, p", [(5, 2 / 32), (6, 2 / 64)])
def test_wilcoxon_all_positive_differences_give_the_exact_p(n, p):
    """n pairs all improved: under H0 each sign is + or - with 1/2, so the two-sided exact p is
    2 * (1/2)^n (W+ = n(n+1)/2 is the most extreme of 2^n sign patterns)."""
    a = [0.5] * n
    b = [0.5 + 0.01 * (i + 1) for i in range(n)]  # distinct differences: no ties
    result = paired_test(a, b)
    assert result.n == n and result.p == pytest.approx(p)
    assert result.mean_diff == pytest.approx(0.01 * (n + 1) / 2)
    # 5 pairs can never reach p < 0.05, however large the improvement; 6 can
    outcome = "holds" if n == 6 else "not decided"
    assert str(decide(result, ">")) == f"{outcome} ({format_p(p)})"
    assert decide(result, "<").outcome == ("reversed" if n == 6 else "not decided")
    assert paired_test(b, a).p == pytest.approx(p) and paired_test(b, a).mean_diff < 0


def test_wilcoxon_hand_computed_mixed_signs():
    # differences +1, +2, -3, +4, +5, +6 (ranks 1..6): W- = 3; sign patterns of 1..6 with a rank sum <= 3:
    # {}, {1}, {2}, {3}, {1, 2} -> 5 of 64; two-sided p = 10/64
    diffs = [1.0, 2.0, -3.0, 4.0, 5.0, 6.0]
    result = paired_test([0.0] * 6, diffs)
    assert result.p == pytest.approx(10 / 64)
    assert decide(result, ">").text == "not decided (p = 0.16)"


def test_verdict_texts_and_undecidable_cases():
    assert decide(PairedResult(12, 0.04, 0.003), ">").text == "holds (p = 0.003)"
    assert decide(PairedResult(12, -0.04, 0.01), ">").text == "reversed (p = 0.01)"
    assert decide(PairedResult(12, -0.04, 0.01), "<").text == "holds (p = 0.01)"
    assert decide(PairedResult(12, 0.01, 0.41), ">").text == "not decided (p = 0.41)"
    assert decide(PairedResult(12, 0.01, 0.0004), ">").text == "holds (p < 0.001)"
    assert decide(PairedResult(12, 0.01, 0.04), ">", alpha=0.01).outcome == "not decided"
    same = paired_test([0.3, 0.5, 0.7], [0.3, 0.5, 0.7])  # every difference zero
    assert same.n == 3 and same.mean_diff == 0 and math.isnan(same.p)
    assert decide(same, ">").text == "not decided (p = n/a)"
    one = paired_test([0.3], [0.9])
    assert one.n == 1 and math.isnan(one.p) and decide(one, ">").outcome == "not decided"
    dropped = paired_test([0.1, math.nan, 0.2], [0.3, 0.4, math.nan])  # pairs with a NaN are dropped
    assert dropped.n == 1 and dropped.diffs == pytest.approx((0.2,))
    with pytest.raises(ValueError, match="aligned"):
        paired_test([0.1, 0.2], [0.1])
    with pytest.raises(ValueError):
        decide(same, "=")  # type: ignore[arg-type]


def test_minimal_detectable_difference_is_the_normal_formula():
    diffs = [0.02, -0.01, 0.05, 0.03, 0.00, 0.04, 0.01, 0.06]
    z = 1.959963984540054 + 0.8416212335729143  # z_0.975 + z_0.8
    expected = z * np.std(diffs, ddof=1) / math.sqrt(len(diffs))
    assert minimal_detectable_difference(diffs) == pytest.approx(expected)
    assert minimal_detectable_difference(diffs, power=0.9) > minimal_detectable_difference(diffs)
    assert minimal_detectable_difference(diffs * 4) == pytest.approx(expected / 2, rel=0.1)  # 4x pairs: ~half
    assert math.isnan(minimal_detectable_difference([0.1]))


# ------------------------------------------------------------------------- protocol card
def test_protocol_card_of_runs_with_the_same_protocol():
    card = protocol_card([protocol(), protocol()], n_seeds=3)
    entries = dict(card.entries)
    assert card.stamp is None
    assert entries["data"] == "built-in brats, 40 patients, data seed 0, sha256 0123abcd4567"
    assert entries["patients per set"] == "3 labeled / 25 unlabeled / 4 val / 8 test"
    assert entries["what steered training"] == "validation patients (selection val)"
    assert entries["unlabeled slices"].endswith("(body)") and "label-free" in entries["unlabeled slices"]
    assert entries["test slices"] == "every slice of the test volumes (all)"
    assert entries["empty-mask rule"].startswith("both empty: DSC 1")
    assert entries["seeds"] == "3"
    assert entries["std"] == STD_DEFINITION == "sample std over seeds, ddof 1"
    assert entries["CI"] == CI_DEFINITION == "95% bootstrap CI (BCa) of the mean over patients x seeds"
    assert entries["paired test"] == TEST_DEFINITION and "Wilcoxon" in TEST_DEFINITION
    md = card.to_markdown()
    assert md.startswith("## Protocol card\n") and "- **seeds**: 3" in md
    assert "<h2>Protocol card</h2>" in card.to_html() and "<td style='text-align:left'>3</td>" in card.to_html()
    assert "seeds: 3" in card.lines()


def test_the_card_names_the_built_in_datas_difficulty(tmp_path):
    from workbench.data.fingerprint import BUILTIN_MANIFEST, dataset_fingerprint
    from workbench.data.synthetic import generate

    data = {**protocol()["data"], "builtin": {"kind": "brats", "patients": 40, "seed": 0, "difficulty": "paper"}}
    entries = dict(protocol_card([protocol(data=data)], n_seeds=1).entries)
    assert entries["data"] == "built-in brats, 40 patients, data seed 0, difficulty paper, sha256 0123abcd4567"
    generate("hecktor", tmp_path / "h", 1, seed=0, difficulty={"contrast": {"CT": 2.0}})
    assert dataset_fingerprint(tmp_path / "h", "auto")["builtin"]["difficulty"] == "custom"
    manifest = tmp_path / "h" / BUILTIN_MANIFEST
    record = json.loads(manifest.read_text())
    del record["difficulty"]  # data generated before difficulties existed
    manifest.write_text(json.dumps(record))
    assert dataset_fingerprint(tmp_path / "h", "auto")["builtin"]["difficulty"] == "clear"


def test_protocol_card_lists_the_distinct_values_of_differing_runs():
    real = protocol(
        data={"folder": "/data/hecktor", "format": "hecktor", "builtin": None, "sha256": "ffee" * 16},
        patients={"labeled": 6, "unlabeled": 22, "val": 4, "test": 8},
        test_slices="tumour",
        selection="train",
    )
    entries = dict(protocol_card([protocol(), real, protocol()], n_seeds=2).entries)
    assert entries["data"] == (
        "built-in brats, 40 patients, data seed 0, sha256 0123abcd4567; "
        "folder /data/hecktor (format hecktor), sha256 ffeeffeeffee"
    )
    assert (
        entries["patients per set"] == "3 labeled / 25 unlabeled / 4 val / 8 test; 6 labeled / 22 unlabeled / "
        "4 val / 8 test"
    )
    assert entries["what steered training"] == (
        "validation patients (selection val); training accuracy on the labeled patients (selection train)"
    )
    assert entries["test slices"].endswith("; tumour slices only, the paper's protocol (tumour)")
    assert entries["split seed"] == "0"


def test_protocol_card_of_runs_made_before_protocol_cards():
    entries = dict(protocol_card([None, {}], n_seeds=1).entries)
    assert entries["data"] == NOT_RECORDED == "not recorded (run made before protocol cards)"
    assert entries["what steered training"] == NOT_RECORDED
    assert entries["std"] == STD_DEFINITION  # the definitions hold whatever the runs recorded
    mixed = dict(protocol_card([protocol(), None], n_seeds=1).entries)
    assert mixed["test slices"] == f"every slice of the test volumes (all); {NOT_RECORDED}"


def test_a_run_steered_by_the_test_patients_stamps_the_card():
    assert TEST_FEEDBACK_STAMP == "test feedback (paper protocol)"
    card = protocol_card([protocol(), protocol(selection="test", stamp=TEST_FEEDBACK_STAMP)], n_seeds=1)
    assert card.stamp == TEST_FEEDBACK_STAMP
    assert card.title == f"Protocol card ({TEST_FEEDBACK_STAMP})"
    assert card.lines()[0] == f"STAMP: {TEST_FEEDBACK_STAMP}"
    assert card.to_markdown().startswith(f"## Protocol card ({TEST_FEEDBACK_STAMP})\n\n**{TEST_FEEDBACK_STAMP}**")
    assert f"<strong>{TEST_FEEDBACK_STAMP}</strong>" in card.to_html()
    assert TEST_FEEDBACK_STAMP in dict(card.entries)["what steered training"]
