"""Answering a batch of independent requests (an engine's batch) so that a bad request fails alone.

Both adapters (Triton's ``model.py``, the Ray Serve deployment) hand their batch
here: one ``Recommender.recommend`` call per distinct ``(k, exclude_seen)``, and
when the runtime refuses that call (TypeError / ValueError), each of its
sessions is answered alone so that only the offending ones get their error.
"""

from __future__ import annotations

from typing import NamedTuple

from ..runtime import Recommendation, Recommender
from ..vocab import RawId


class Request(NamedTuple):
    """One session of raw item ids and its options."""

    session: list[RawId]
    k: int = 20
    exclude_seen: bool = False


def answer(recommender: Recommender, requests: list[Request]) -> list[Recommendation | TypeError | ValueError]:
    """The recommendation of each request, in order, or the TypeError / ValueError it raised."""
    answers: list = [None] * len(requests)
    groups: dict[tuple[int, bool], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault((request.k, request.exclude_seen), []).append(index)
    for (k, exclude_seen), members in groups.items():
        try:
            results = recommender.recommend([requests[i].session for i in members], k, exclude_seen=exclude_seen)
        except (TypeError, ValueError):
            results = [_alone(recommender, requests[i]) for i in members]
        for index, result in zip(members, results):
            answers[index] = result
    return answers


def _alone(recommender: Recommender, request: Request) -> Recommendation | TypeError | ValueError:
    try:
        return recommender.recommend([request.session], request.k, exclude_seen=request.exclude_seen)[0]
    except (TypeError, ValueError) as exc:
        return exc
