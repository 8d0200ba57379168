import math

import numpy as np
import pytest

from rsoup_lib.pareto import distance_to_front, front_gap, hypervolume_2d, pareto_mask, staircase


def test_pareto_mask_respects_directions():
    pts = [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.2, 0.2)]
    assert pareto_mask(pts) == [True, True, True, False]
    # minimise the first objective (KL), maximise the second (reward)
    kl_reward = [(0.1, 0.2), (0.5, 0.6), (0.6, 0.5), (0.05, 0.0)]
    assert pareto_mask(kl_reward, maximize=(False, True)) == [True, True, False, True]


def test_hypervolume_of_known_shapes():
    assert hypervolume_2d([(1.0, 1.0)], ref=(0.0, 0.0)) == pytest.approx(1.0)
    # two boxes 2x1 and 1x2 overlapping in 1x1: 2 + 2 - 1 = 3
    assert hypervolume_2d([(2.0, 1.0), (1.0, 2.0)], ref=(0.0, 0.0)) == pytest.approx(3.0)
    # a dominated point adds nothing, a point below the ref adds nothing
    assert hypervolume_2d([(2.0, 1.0), (1.0, 2.0), (0.5, 0.5), (-1, 5)], ref=(0.0, 0.0)) == pytest.approx(3.0)
    # minimising x: the point (kl=1, r=2) against ref (kl=3, r=0) spans 2 x 2
    assert hypervolume_2d([(1.0, 2.0)], ref=(3.0, 0.0), maximize=(False, True)) == pytest.approx(4.0)


def test_hypervolume_matches_grid_count():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(12, 2))
    g = np.linspace(0, 1, 801)[:-1] + 1 / 1600
    xx, yy = np.meshgrid(g, g)
    covered = np.zeros_like(xx, dtype=bool)
    for x, y in pts:
        covered |= (xx <= x) & (yy <= y)
    assert hypervolume_2d(pts, ref=(0, 0)) == pytest.approx(covered.mean(), abs=5e-3)


def test_staircase_and_gap():
    a = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.5)]
    b = [(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]
    s = staircase(a, [0.5, 1.0, 3.0])
    assert list(s) == [0.0, 1.0, 1.5]
    assert math.isnan(staircase(a, [-1.0])[0])
    assert front_gap(a, b) > 0 and front_gap(b, a) == pytest.approx(-front_gap(a, b))
    assert front_gap(a, a) == 0.0
    assert math.isnan(front_gap([(0, 0), (1, 1)], [(2, 0), (3, 1)]))


def test_distance_to_front_sign():
    front = [(0.0, 1.0), (1.0, 0.0)]
    assert distance_to_front((0.5, 0.5), front) == pytest.approx(0.0, abs=1e-12)
    assert distance_to_front((0.0, 0.0), front) == pytest.approx(-math.sqrt(0.5))
    assert distance_to_front((1.0, 1.0), front) == pytest.approx(math.sqrt(0.5))
