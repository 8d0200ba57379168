import math

import numpy as np
import pytest

from rsoup_lib import pareto
from rsoup_lib.pareto import distance_to_front, front_gap, hypervolume_2d, pareto_mask

S = math.sqrt(0.5)


def test_pareto_mask_respects_directions():
    pts = [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.2, 0.2)]
    assert pareto_mask(pts) == [True, True, True, False]
    # minimise the first objective (KL), maximise the second (reward)
    kl_reward = [(0.1, 0.2), (0.5, 0.6), (0.6, 0.5), (0.05, 0.0)]
    assert pareto_mask(kl_reward, maximize=(False, True)) == [True, True, False, True]


def test_front_polyline_keeps_pareto_points_sorted_along_the_front():
    pts = [(1.0, 0.0), (0.2, 0.2), (0.0, 1.0), (0.5, 0.5), (0.5, 0.5), (0.0, 0.5)]
    np.testing.assert_array_equal(pareto.front_polyline(pts), [(0, 1), (0.5, 0.5), (1, 0)])
    kl_reward = [(0.5, 0.6), (0.6, 0.5), (0.1, 0.2), (0.05, 0.0)]
    np.testing.assert_array_equal(pareto.front_polyline(kl_reward, (False, True)), [(0.05, 0), (0.1, 0.2), (0.5, 0.6)])


def test_hypervolume_of_known_shapes():
    assert hypervolume_2d([(1.0, 1.0)], ref=(0.0, 0.0)) == pytest.approx(1.0)
    # two boxes 2x1 and 1x2 overlapping in 1x1: 2 + 2 - 1 = 3
    assert hypervolume_2d([(2.0, 1.0), (1.0, 2.0)], ref=(0.0, 0.0)) == pytest.approx(3.0)
    # a dominated point adds nothing, a point below the ref adds nothing
    assert hypervolume_2d([(2.0, 1.0), (1.0, 2.0), (0.5, 0.5), (-1, 5)], ref=(0.0, 0.0)) == pytest.approx(3.0)
    # minimising x: the point (kl=1, r=2) against ref (kl=3, r=0) spans 2 x 2
    assert hypervolume_2d([(1.0, 2.0)], ref=(3.0, 0.0), maximize=(False, True)) == pytest.approx(4.0)
    # a three-step staircase: 3x1 + 2x1 + 1x1 = 6
    assert hypervolume_2d([(3, 1), (2, 2), (1, 3)], ref=(0, 0)) == pytest.approx(6.0)


def test_hypervolume_matches_grid_count():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(12, 2))
    g = np.linspace(0, 1, 801)[:-1] + 1 / 1600
    xx, yy = np.meshgrid(g, g)
    covered = np.zeros_like(xx, dtype=bool)
    for x, y in pts:
        covered |= (xx <= x) & (yy <= y)
    assert hypervolume_2d(pts, ref=(0, 0)) == pytest.approx(covered.mean(), abs=5e-3)


def test_envelope_interpolates_the_pareto_points():
    a = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.5), (1.5, 0.2)]  # (1.5, 0.2) is dominated
    np.testing.assert_allclose(pareto.envelope(a, [0.5, 1.0, 1.5, 2.0]), [0.5, 1.0, 1.25, 1.5])
    assert np.isnan(pareto.envelope(a, [-0.1, 2.1])).all()


def test_front_gap_basic_properties():
    a = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.5)]
    b = [(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]
    assert front_gap(a, b) > 0 and front_gap(b, a) == pytest.approx(-front_gap(a, b))
    assert front_gap(a, a) == 0.0
    assert math.isnan(front_gap([(0, 0), (1, 1)], [(2, 0), (3, 1)]))


def test_front_gap_compares_curves_not_staircases():
    """Regression (defect 2): the staircase gap of these two fronts was 0.5 / 200 = 0.0025
    (they differed only at the last grid point); the curves differ by 0.5 * kl."""
    a = [(0.0, 0.0), (1.0, 1.0)]
    b = [(0.0, 0.0), (1.0, 0.5)]
    assert front_gap(a, b) == pytest.approx(0.25)
    assert front_gap(b, a) == pytest.approx(-0.25)


def test_front_gap_hand_computed_cases():
    line = [(0.0, 0.0), (2.0, 2.0)]  # R = kl on [0, 2]
    # R_B = 0.5 + 0.25 kl: A is above only for kl > 2/3; mean of 0.75 kl - 0.5 over [0, 2]
    assert front_gap(line, [(0.0, 0.5), (2.0, 1.0)]) == pytest.approx(0.25)
    # A above on [0, 1.625], below after: (0.25 + 0.1) / 2
    assert front_gap([(0, 0), (1, 1.5), (2, 1.7)], line) == pytest.approx(0.175)
    # partial overlap: B = kl - 0.5 on [1, 3]; compared on [1, 2] only
    assert front_gap(line, [(1.0, 0.5), (3.0, 2.5)]) == pytest.approx(0.5)
    # dominated points do not count (more KL and no more reward than another point)
    assert front_gap(line + [(0.5, -0.1), (2.5, 1.0), (2.5, 2.0)], [(0.0, 0.5), (2.0, 1.0)]) == pytest.approx(0.25)
    # ranges that touch in one KL: the difference there
    assert front_gap([(0, 0), (1, 1)], [(1, 0.5), (2, 1)]) == pytest.approx(0.5)


def test_distance_to_front_on_and_off_vertices():
    front = [(0.0, 1.0), (1.0, 0.0)]
    assert distance_to_front((0.5, 0.5), front) == pytest.approx(0.0, abs=1e-12)
    assert distance_to_front((0.0, 1.0), front) == pytest.approx(0.0, abs=1e-12)
    assert distance_to_front((0.0, 0.0), front) == pytest.approx(-S)
    assert distance_to_front((1.0, 1.0), front) == pytest.approx(S)
    assert distance_to_front((0.4, 0.4), front) == pytest.approx(-0.2 * S)


def test_distance_above_a_segment_between_vertices_is_positive():
    """Regression (defect 1): (0.6, 0.6) dominates no vertex, but lies above the segment."""
    assert distance_to_front((0.6, 0.6), [(0.0, 1.0), (1.0, 0.0)]) == pytest.approx(0.2 * S)


def test_distance_past_the_ends_uses_the_staircase_rays():
    """Regression (defect 1): past an end the curve continues with axis-parallel rays."""
    front = [(0.0, 1.0), (1.0, 0.0)]
    assert distance_to_front((-0.5, 0.5), front) == pytest.approx(-0.5)  # dominated by (0, 1)
    assert distance_to_front((-0.5, 1.5), front) == pytest.approx(0.5)  # above the ray y = 1
    assert distance_to_front((1.5, -0.5), front) == pytest.approx(0.5)  # beyond the ray x = 1
    assert distance_to_front((1.5, 0.2), front) == pytest.approx(math.hypot(0.5, 0.2))
    assert distance_to_front((1.2, 0.1), front) > 0  # dominates the end vertex (1, 0)


def test_distance_ignores_dominated_points_of_the_front():
    """Regression (defect 1): (0, 0.5) is dominated by (0, 1); the polyline used to pass
    through it, and (0.3, 0.5), below the real front, came out positive."""
    front = [(1.0, 0.0), (0.0, 0.5), (0.0, 1.0)]
    assert distance_to_front((0.3, 0.5), front) == pytest.approx(-0.2 * S)


def test_distance_with_a_minimised_objective():
    kl_reward = [(0.1, 0.2), (0.5, 0.6)]
    up = (False, True)
    assert pareto.distance_to_front((0.3, 0.5), kl_reward, maximize=up) == pytest.approx(0.1 * S)
    assert pareto.distance_to_front((0.3, 0.3), kl_reward, maximize=up) == pytest.approx(-0.1 * S)
    # less KL and less reward than the smallest-KL point: a new Pareto point, 0.05 beyond the ray
    assert pareto.distance_to_front((0.05, 0.1), kl_reward, maximize=up) == pytest.approx(0.05)
    # more KL and less reward than the best point: behind the front, nearest to its segment
    assert pareto.distance_to_front((0.6, 0.3), kl_reward, maximize=up) == pytest.approx(-0.4 * S)
    # more KL and about as much reward as the best point: 0.05 below the ray reward = 0.6
    assert pareto.distance_to_front((1.0, 0.55), kl_reward, maximize=up) == pytest.approx(-0.05)


def test_distance_to_a_single_point_front_is_to_its_corner():
    assert distance_to_front((0.0, 0.0), [(1.0, 1.0)]) == pytest.approx(-1.0)
    assert distance_to_front((2.0, 2.0), [(1.0, 1.0)]) == pytest.approx(math.sqrt(2))
    assert distance_to_front((0.5, 2.0), [(1.0, 1.0)]) == pytest.approx(1.0)
