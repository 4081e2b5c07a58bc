"""One batch of sessions answered by a ``Recommender``, each bad session isolated as an error row.

``Recommender.recommend`` refuses a whole batch for one bad session (a wrong id
type, a session over the runtime's limits). Here such a batch is split in halves
until every failing session stands alone; the others are then answered together
in one call, so their answers are exactly ``recommend`` on the batch without the
bad sessions (a session's scores may differ in the last float bit with the batch
around it, so they are never answered in pieces).
"""

from __future__ import annotations

import re

from ..runtime import Recommender
from .tables import Answers, Sessions

_SESSION_ZERO = re.compile(r"^session 0\b ?")


def answer_batch(recommender: Recommender, batch: Sessions, k: int, exclude_seen: bool) -> Answers:
    """The answers to ``batch``, row for row; a row already in error, or refused by ``recommend``
    (TypeError / ValueError), gets ``errors[i]`` = "<where>: <why>"."""
    errors = list(batch.errors)
    good = [index for index, error in enumerate(errors) if error is None]
    try:
        results = recommender.recommend([batch.sessions[index] for index in good], k, exclude_seen=exclude_seen)
    except (TypeError, ValueError):
        middle = len(good) // 2
        refused = {**_refused(recommender, batch.sessions, good[:middle], k, exclude_seen),
                   **_refused(recommender, batch.sessions, good[middle:], k, exclude_seen)}
        for index, message in refused.items():
            errors[index] = f"{batch.where(index)}: {_SESSION_ZERO.sub('session ', message)}"
        good = [index for index in good if errors[index] is None]
        results = recommender.recommend([batch.sessions[index] for index in good], k, exclude_seen=exclude_seen)
    answers = Answers(items=[None] * len(batch), scores=[None] * len(batch), n_unknown=[0] * len(batch),
                      fallback=[False] * len(batch), errors=errors)
    for index, result in zip(good, results):
        answers.items[index] = result.items
        answers.scores[index] = result.scores
        answers.n_unknown[index] = result.n_unknown
        answers.fallback[index] = result.fallback
    return answers


def _refused(recommender: Recommender, sessions: list, indices: list[int], k: int, exclude_seen: bool
             ) -> dict[int, str]:
    """{index: message} of the sessions that ``recommend`` refuses, found by halving."""
    if not indices:
        return {}
    try:
        recommender.recommend([sessions[index] for index in indices], k, exclude_seen=exclude_seen)
    except (TypeError, ValueError) as exc:
        if len(indices) == 1:
            return {indices[0]: str(exc)}
        middle = len(indices) // 2
        return {**_refused(recommender, sessions, indices[:middle], k, exclude_seen),
                **_refused(recommender, sessions, indices[middle:], k, exclude_seen)}
    return {}
