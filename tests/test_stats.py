"""Estimates with their uncertainty over prompts (rsoup_lib.stats)."""

import math

import numpy as np
import pytest

from rsoup_lib import pareto, stats
from rsoup_lib.stats import Estimate

S = math.sqrt(0.5)


def point(*columns, n=8):
    """Per-prompt samples [n, k] from columns (each a scalar, repeated n times, or an array)."""
    n = next((len(c) for c in columns if np.ndim(c) > 0), n)
    return np.stack([np.broadcast_to(np.asarray(c, dtype=float), (n,)) for c in columns], axis=1)


def wobble(n=8, scale=0.1):
    """A deterministic per-prompt zero-mean pattern."""
    x = np.sin(np.arange(n) * 1.7)
    return scale * (x - x.mean())


# --- Estimate -------------------------------------------------------------------------------


def test_estimate_renders_and_serialises():
    e = Estimate(0.0421, 0.0123, 0.018, 0.066, 64, "paired")
    assert str(e) == "+0.042 ± 0.012"
    assert str(Estimate(-1.5, 0.00034, 0, 0, 2, "mean")) == "-1.50000 ± 0.00034"
    assert e.to_dict() == {"value": 0.0421, "se": 0.0123, "lo": 0.018, "hi": 0.066, "n": 64,
                           "method": "paired", "note": ""}
    assert str(stats.undefined("the fronts share no KL range")) == "NaN (the fronts share no KL range)"
    with pytest.raises(AttributeError):
        e.value = 1.0  # frozen


# --- means and differences ------------------------------------------------------------------


def test_mean_against_hand_computation():
    e = stats.mean([1.0, 2.0, 3.0, 6.0])
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    assert e.value == pytest.approx(3.0) and e.se == pytest.approx(sd / 2) and e.n == 4
    assert (e.lo, e.hi) == pytest.approx((3 - 1.96 * sd / 2, 3 + 1.96 * sd / 2), abs=1e-3)


def test_paired_difference_against_hand_computation():
    a, b = [1.0, 2.0, 4.0], [0.5, 2.0, 3.0]  # d = 0.5, 0, 1
    e = stats.paired_difference(a, b)
    assert e.value == pytest.approx(0.5) and e.se == pytest.approx(0.5 / math.sqrt(3)) and e.method == "paired"
    u = stats.unpaired_difference(a, b)
    se_a, se_b = np.std(a, ddof=1) / math.sqrt(3), np.std(b, ddof=1) / math.sqrt(3)
    assert u.value == pytest.approx(0.5) and u.se == pytest.approx(math.hypot(se_a, se_b)) and u.method == "unpaired"


def test_pairing_shrinks_the_standard_error_on_correlated_data():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=200)  # prompts differ a lot
    b = a - 0.05 + rng.normal(0.0, 0.02, size=200)  # the same prompts, a small shift
    paired, unpaired = stats.paired_difference(a, b), stats.unpaired_difference(a, b)
    assert paired.value == pytest.approx(unpaired.value)
    assert paired.se < unpaired.se / 10
    assert paired.lo > 0 > unpaired.lo  # only the paired test sees the shift


def test_inputs_are_validated_with_clear_messages():
    with pytest.raises(ValueError, match="same prompts"):
        stats.paired_difference([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 prompts"):
        stats.mean([1.0])
    with pytest.raises(ValueError, match="1-D"):
        stats.mean([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="NaN"):
        stats.mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="same prompts"):
        stats.front_gap([point([0, 1], [0, 1])], [point([0, 1, 2], [0, 1, 2])], n_boot=10)
    with pytest.raises(ValueError, match="shape"):
        stats.hypervolume([np.zeros(4)], ref=(0, 0), n_boot=10)
    with pytest.raises(ValueError, match="one soup per lambda"):
        stats.lmc_mean_gap([np.zeros(3)], np.zeros(3), np.ones(3), [0.3, 0.6])


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_given_a_seed():
    x = np.random.default_rng(2).normal(size=50)
    stat = lambda s: float(s[0].mean())  # noqa: E731
    assert stats.bootstrap(stat, [x], n_boot=200, seed=3) == stats.bootstrap(stat, [x], n_boot=200, seed=3)
    assert stats.bootstrap(stat, [x], n_boot=200, seed=3) != stats.bootstrap(stat, [x], n_boot=200, seed=4)


def test_bootstrap_resamples_the_same_prompts_for_every_array():
    b = np.random.default_rng(4).normal(size=40)
    a = b + 0.3
    e = stats.bootstrap(lambda s: float(s[0].mean() - s[1].mean()), [a, b], n_boot=200)
    assert e.value == pytest.approx(0.3) and e.se == pytest.approx(0.0, abs=1e-12)
    assert e.lo == pytest.approx(0.3) and e.hi == pytest.approx(0.3) and e.method == "bootstrap"


def test_bootstrap_se_of_a_mean_matches_the_analytic_se():
    x = np.random.default_rng(5).exponential(size=400)
    boot = stats.bootstrap(lambda s: float(s[0].mean()), x, n_boot=400, seed=0)
    analytic = stats.mean(x)
    assert boot.value == pytest.approx(analytic.value)
    assert boot.se == pytest.approx(analytic.se, rel=0.15)
    assert boot.lo < analytic.value < boot.hi


def test_bootstrap_ignores_nan_replicates_and_gives_up_when_most_are_nan():
    x = np.arange(10.0)
    # NaN whenever the resample misses prompt 9 (probability (9/10)^10 ~ 0.35)
    some = stats.bootstrap(lambda s: float(s[0].mean()) if 9 in s[0] else math.nan, [x], n_boot=200)
    assert math.isfinite(some.value) and math.isfinite(some.se) and "replicates undefined" in some.note
    # NaN whenever it misses prompt 0 or prompt 9 (probability ~ 0.58)
    most = stats.bootstrap(lambda s: float(s[0].mean()) if {0, 9} <= set(s[0]) else math.nan, [x],
                           n_boot=200, nan_note="why")
    assert math.isnan(most.value) and most.note.startswith("why (")
    full = stats.bootstrap(lambda s: math.nan, [x], n_boot=10, nan_note="no range")
    assert math.isnan(full.value) and full.note == "no range"


# --- linear mode connectivity ---------------------------------------------------------------


def test_lmc_gap_is_the_paired_distance_to_the_chord():
    end0, end1 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 4.0])
    soup = np.array([1.0, 1.5, 3.0])  # chord at 0.5: 0.5, 1.0, 3.0 -> gaps 0.5, 0.5, 0
    e = stats.lmc_gap(soup, end0, end1, 0.5)
    assert e.value == pytest.approx(1 / 3) and e.se == pytest.approx(np.std([0.5, 0.5, 0], ddof=1) / math.sqrt(3))
    with pytest.raises(ValueError):
        stats.lmc_gap(soup, end0, end1, 1.5)


def test_lmc_mean_gap_does_not_treat_correlated_lambdas_as_independent():
    rng = np.random.default_rng(6)
    end0, end1 = rng.normal(size=30), rng.normal(size=30)
    bump = 0.2 + rng.normal(0, 0.1, size=30)  # the same per-prompt gap at every lambda
    lams = [0.0, 0.25, 0.5, 0.75, 1.0]
    soups = [(1 - lam) * end0 + lam * end1 + (bump if 0 < lam < 1 else 0) for lam in lams]
    one = stats.lmc_gap(soups[2], end0, end1, 0.5)
    many = stats.lmc_mean_gap(soups, end0, end1, lams)
    assert many.value == pytest.approx(one.value) and many.se == pytest.approx(one.se)
    assert math.isnan(stats.lmc_mean_gap([end0, end1], end0, end1, [0.0, 1.0]).value)


# --- fronts ---------------------------------------------------------------------------------


def test_front_gap_value_is_the_gap_of_the_mean_points():
    w = wobble()
    a = [point(0.0 + w, 0.0 + w), point(2.0 + w, 2.0 + w)]  # means (0, 0), (2, 2)
    b = [point(0.0 + w, 0.5 + w), point(2.0 + w, 1.0 + w)]  # means (0, 0.5), (2, 1)
    e = stats.front_gap(a, b, n_boot=200)
    assert e.value == pytest.approx(pareto.front_gap([(0, 0), (2, 2)], [(0, 0.5), (2, 1)])) == pytest.approx(0.25)
    assert e.method == "bootstrap" and e.n == 8 and e.lo <= e.value <= e.hi


def test_front_gap_bootstrap_is_paired_across_fronts():
    """B is A shifted by 0.1 in reward on every prompt: the gap is exactly 0.1 in every replicate."""
    w = wobble(12, 0.3)
    a = [point(0.1 * i + 0.05 * w, 0.3 * i + w) for i in range(4)]
    b = [p - np.array([0.0, 0.1]) for p in a]
    e = stats.front_gap(a, b, n_boot=200)
    assert e.value == pytest.approx(0.1) and e.se == pytest.approx(0.0, abs=1e-9)


def test_front_gap_without_a_common_kl_range_is_nan_with_its_cause():
    w = wobble()
    a = [point(0.0 + w, 0.0), point(1.0 + w, 1.0)]
    b = [point(2.0 + w, 0.0), point(3.0 + w, 1.0)]
    e = stats.front_gap(a, b, n_boot=50)
    assert math.isnan(e.value) and e.note == "the fronts share no KL range"


def test_hypervolume_of_a_known_staircase():
    w = wobble()
    front = [point(3 + w, 1 - w), point(2 + w, 2 + w), point(1.0, 3 + w)]
    e = stats.hypervolume(front, ref=(0, 0), n_boot=200)
    assert e.value == pytest.approx(6.0) and e.se > 0 and e.lo < 6.0 < e.hi
    exact = stats.hypervolume([point(3, 1), point(2, 2), point(1, 3)], ref=(0, 0), n_boot=50)
    assert exact.value == pytest.approx(6.0) and exact.se == 0.0


def test_hypervolume_difference_is_paired():
    w = wobble(10, 0.5)
    a = [point(2 + w, 1 + w), point(1 + w, 2 + w)]  # HV of the means: 3
    b = [point(1 + w, 1 + w)]  # HV of the mean: 1
    d = stats.hypervolume_difference(a, b, ref=(-5, -5), n_boot=200)
    sep_a = stats.hypervolume(a, ref=(-5, -5), n_boot=200)
    assert d.value == pytest.approx((7 * 6 + 6 * 7 - 36) - 36)  # against ref (-5, -5)
    assert d.se < sep_a.se / 2  # the shared prompt effect cancels in the difference


def test_distance_to_front_estimates():
    w = wobble()
    front = [point(0.0 + w, 1.0 + w), point(1.0 + w, 0.0 + w)]
    above = stats.distance_to_front(point(0.6 + w, 0.6 + w), front, n_boot=200)
    assert above.value == pytest.approx(0.2 * S) and above.se == pytest.approx(0.0, abs=1e-9)
    on = stats.distance_to_front(point(0.5 + w, 0.5 - w), front, n_boot=200)
    assert on.value == pytest.approx(0.0, abs=1e-12) and on.lo <= 0 <= on.hi
    past_end = stats.distance_to_front(point(-0.5 + w, 0.5 + w), front, n_boot=50)
    assert past_end.value == pytest.approx(-0.5)
    kl = stats.distance_to_front(point(0.3 + w, 0.5), [point(0.1, 0.2), point(0.5, 0.6)], maximize=(False, True), n_boot=50)
    assert kl.value == pytest.approx(0.1 * S)


def test_positions_are_column_means():
    np.testing.assert_allclose(stats.positions([point([0, 2], [1, 3]), point([1, 1], [0, 0])]), [[1, 2], [1, 0]])


def test_mean_distance_to_front_averages_the_signed_distances():
    w = wobble()
    front = [point(0.0 + w, 1.0 + w), point(1.0 + w, 0.0 + w)]
    beyond, behind = point(0.6 + w, 0.6 + w), point(-0.5 + w, 0.5 + w)  # +0.2/sqrt(2) and -0.5
    e = stats.mean_distance_to_front([beyond, behind], front, n_boot=200)
    assert e.value == pytest.approx((0.2 * S - 0.5) / 2)
    assert e.se == pytest.approx(0.0, abs=1e-9)  # the shared prompt effect moves every point alike
    one = stats.mean_distance_to_front([beyond], front, n_boot=200)
    assert one.value == pytest.approx(stats.distance_to_front(beyond, front, n_boot=50).value)
    noisy = stats.mean_distance_to_front([point(0.6 + w, 0.6 - w)], front, n_boot=200)
    assert noisy.se > 0 and noisy.lo <= noisy.value <= noisy.hi
    with pytest.raises(ValueError, match="same prompts"):
        stats.mean_distance_to_front([point(0.5, 0.5, n=5)], front)
