"""Comparison of instance lists after a trip through an InstanceArray (messages and bags tests): every
field of `InstanceResult`, the float32 ones to float32, the grasp axes through the quaternion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refine_perception.instances.result import InstanceResult


def by_score(results: Sequence[InstanceResult]) -> list[InstanceResult]:
    """The order an InstanceArray keeps: decreasing score, ties as given."""
    return sorted(results, key=lambda r: -r.score)


def assert_same_results(got: Sequence[InstanceResult], expected: Sequence[InstanceResult]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.array_equal(g.mask, e.mask) and g.mask.dtype == bool
        assert g.score == np.float32(e.score)
        assert (g.class_id, g.class_name) == (e.class_id, e.class_name)
        assert g.box == e.box
        assert (g.grasp is None) == (e.grasp is None)
        if e.grasp is not None:
            assert g.grasp.position == e.grasp.position
            np.testing.assert_allclose(g.grasp.closing, e.grasp.closing, atol=1e-12)
            np.testing.assert_allclose(g.grasp.approach, e.grasp.approach, atol=1e-12)
            assert (g.grasp.width, g.grasp.score) == (np.float32(e.grasp.width), np.float32(e.grasp.score))
