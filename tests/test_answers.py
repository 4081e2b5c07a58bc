"""``srgnn_rt.engines.answers``: a batch of requests answered as each alone would be, bad ones failing alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgnn_rt import Recommender
from srgnn_rt.engines.answers import Request, answer


@pytest.fixture(scope="module")
def recommender(synthetic_bundle) -> Recommender:
    return Recommender.load(synthetic_bundle, device="cpu", threads=1)


def _request(raw_ids):
    """A request: known ids, sometimes an unknown one, a float (refused) or k = 0 (refused)."""
    good = st.lists(st.sampled_from(raw_ids[:40]), min_size=0, max_size=8)
    session = st.one_of(good, good.map(lambda s: s + [-1]), good.map(lambda s: s + [2.5]))
    return st.builds(Request, session, st.sampled_from([0, 1, 3, 20]), st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batch_answers_equal_each_alone(recommender, data):
    requests = data.draw(st.lists(_request(recommender.bundle.vocab.raw_ids), min_size=1, max_size=12))
    for request, result in zip(requests, answer(recommender, requests), strict=True):
        try:
            expected = recommender.recommend([request.session], request.k, exclude_seen=request.exclude_seen)[0]
        except (TypeError, ValueError) as exc:
            assert type(result) is type(exc) and str(result) == str(exc)
            continue
        assert result.items == expected.items and result.n_unknown == expected.n_unknown
        np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-5, atol=1e-6)
