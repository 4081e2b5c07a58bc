"""Seedable synthetic click sessions: the project's built-in default data.

The generator is a small, documented world with structure a sequence model can
learn and a popularity model cannot:

- a catalog of ``n_items`` items with Zipf-like popularity (``p ∝ rank^-zipf_exponent``,
  ranks shuffled over ids), split into latent topics;
- every item has ``successors`` likely next items inside its topic (drawn by
  popularity), with geometrically decaying probabilities;
- a session starts at a popular item; each next click follows the current item's
  successors (a Markov chain inside the topic), except that with probability
  ``p_jump`` it jumps to a popular item anywhere and with probability ``p_repeat``
  it re-clicks an item already in the session;
- session lengths are lognormal, rounded up to at least 1, cut at ``max_length``
  (Diginetica-like: mean about 5 clicks, long tail).

Everything is vectorised over sessions, one click position at a time, so a
million clicks take well under a second.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic world (defaults: Diginetica-sized)."""

    n_items: int = 43097
    items_per_topic: int = 40
    successors: int = 6
    p_jump: float = 0.15
    p_repeat: float = 0.08
    zipf_exponent: float = 0.75
    mean_length: float = 5.0
    length_sigma: float = 0.9
    max_length: int = 70

    def __post_init__(self):
        for name in ("n_items", "items_per_topic", "successors", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SyntheticConfig.{name} must be an int >= 1, got {value!r}")
        for name in ("p_jump", "p_repeat"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SyntheticConfig.{name} must be in [0, 1], got {value!r}")
        if self.p_jump + self.p_repeat > 1.0:
            raise ValueError(f"p_jump + p_repeat must be <= 1, got {self.p_jump} + {self.p_repeat}")
        if self.mean_length < 1.0:
            raise ValueError(f"SyntheticConfig.mean_length must be >= 1, got {self.mean_length!r}")
        if self.length_sigma <= 0.0 or self.zipf_exponent < 0.0:
            raise ValueError("SyntheticConfig.length_sigma must be > 0 and zipf_exponent >= 0")


@dataclass(frozen=True)
class ClickLog:
    """A click log: one row per click, sessions contiguous, clicks in time order.

    session_id: int64[M]; item_id: int64[M] raw item ids; timestamp: int64[M]
    epoch seconds (UTC).
    """

    session_id: np.ndarray
    item_id: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.session_id)

    def write_csv(self, path: str | os.PathLike) -> None:
        """Write ``session,item,time`` rows (time in epoch seconds) with that header."""
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("session", "item", "time"))
            writer.writerows(zip(self.session_id.tolist(), self.item_id.tolist(), self.timestamp.tolist()))


class _World:
    """Item popularity, topics and successor tables of one seeded world."""

    def __init__(self, config: SyntheticConfig, rng: np.random.Generator):
        n = config.n_items
        ranks = rng.permutation(n) + 1
        popularity = ranks.astype(np.float64) ** -config.zipf_exponent
        self.popularity_cdf = np.cumsum(popularity / popularity.sum())
        n_topics = max(1, n // config.items_per_topic)
        topic_of = rng.integers(0, n_topics, size=n)
        order = np.argsort(topic_of, kind="stable")  # item indices grouped by topic
        starts = np.searchsorted(topic_of[order], np.arange(n_topics + 1))
        # successors[i, j]: the j-th likeliest next item (0-based index) after item i,
        # drawn by popularity among the members of i's topic.
        sizes = starts[topic_of + 1] - starts[topic_of]
        u = rng.random((n, config.successors))
        member_cdf = np.cumsum(popularity[order])
        lo = np.where(starts[topic_of] > 0, member_cdf[starts[topic_of] - 1], 0.0)
        hi = member_cdf[starts[topic_of] + sizes - 1]
        picks = np.searchsorted(member_cdf, lo[:, None] + u * (hi - lo)[:, None], side="right")
        picks = np.minimum(picks, (starts[topic_of] + sizes - 1)[:, None])
        self.successors = order[picks]
        weights = 0.6 ** np.arange(config.successors)
        self.successor_cdf = np.cumsum(weights / weights.sum())

    def popular(self, rng: np.random.Generator, size: int) -> np.ndarray:
        index = np.searchsorted(self.popularity_cdf, rng.random(size), side="right")
        return np.minimum(index, len(self.popularity_cdf) - 1)


def _session_lengths(config: SyntheticConfig, rng: np.random.Generator, n_sessions: int) -> np.ndarray:
    # ceil(X) of a lognormal X with E[X] ≈ mean_length - 0.5 has mean ≈ mean_length.
    sigma = config.length_sigma
    mu = np.log(max(config.mean_length - 0.5, 0.5)) - sigma**2 / 2
    lengths = np.ceil(rng.lognormal(mu, sigma, size=n_sessions)).astype(np.int64)
    return np.clip(lengths, 1, config.max_length)


def generate_sessions_array(
    n_sessions: int, *, seed: int = 0, config: SyntheticConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sessions as a CSR pair: ``items: int64[M]`` internal ids 1..n, ``offsets: int64[B+1]``."""
    if isinstance(n_sessions, bool) or not isinstance(n_sessions, (int, np.integer)) or n_sessions < 1:
        raise ValueError(f"n_sessions must be an int >= 1, got {n_sessions!r}")
    config = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    world = _World(config, rng)
    lengths = _session_lengths(config, rng, int(n_sessions))
    T = int(lengths.max())
    clicks = np.zeros((n_sessions, T), dtype=np.int64)  # 0-based item index
    clicks[:, 0] = world.popular(rng, n_sessions)
    for t in range(1, T):
        active = np.flatnonzero(lengths > t)
        if active.size == 0:
            break
        current = clicks[active, t - 1]
        choice = rng.random(active.size)
        rank = np.searchsorted(world.successor_cdf, rng.random(active.size), side="right")
        nxt = world.successors[current, np.minimum(rank, config.successors - 1)]
        jump = choice < config.p_jump
        nxt[jump] = world.popular(rng, int(jump.sum()))
        repeat = (choice >= config.p_jump) & (choice < config.p_jump + config.p_repeat)
        earlier = (rng.random(active.size) * t).astype(np.int64)
        nxt[repeat] = clicks[active[repeat], earlier[repeat]]
        clicks[active, t] = nxt
    valid = np.arange(T)[None, :] < lengths[:, None]
    offsets = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return clicks[valid] + 1, offsets


def generate_sessions(
    n_sessions: int, *, n_items: int = 43097, seed: int = 0, config: SyntheticConfig | None = None
) -> list[list[int]]:
    """``n_sessions`` sessions of internal item ids 1..n_items, as Python lists.

    ``config`` overrides the world's parameters; its ``n_items`` wins over the
    keyword when both are given.
    """
    config = config or SyntheticConfig(n_items=n_items)
    items, offsets = generate_sessions_array(n_sessions, seed=seed, config=config)
    flat = items.tolist()
    return [flat[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def generate_click_log(
    n_sessions: int,
    *,
    n_items: int = 43097,
    seed: int = 0,
    days: int = 60,
    start: int = 1_451_606_400,  # 2016-01-01T00:00:00Z
    config: SyntheticConfig | None = None,
) -> ClickLog:
    """A raw click log of ``n_sessions`` sessions spread over ``days`` days.

    Raw item ids are distinct integers unrelated to the internal ids (so a
    pipeline that confuses the two fails loudly); session ids are 1..n_sessions;
    clicks are 5–300 s apart. Sessions appear in the log in start-time order.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days!r}")
    config = config or SyntheticConfig(n_items=n_items)
    items, offsets = generate_sessions_array(n_sessions, seed=seed, config=config)
    rng = np.random.default_rng([seed, 1])
    raw_ids = 100_000 + rng.permutation(10 * config.n_items)[: config.n_items]
    lengths = np.diff(offsets)
    session_starts = np.sort(start + rng.integers(0, days * 86_400, size=n_sessions))
    gaps = rng.integers(5, 301, size=len(items))
    gaps[offsets[:-1]] = 0
    # Per-session cumulative sum of gaps: global cumsum minus the session's first value.
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[offsets[:-1]], lengths)
    timestamp = np.repeat(session_starts, lengths) + elapsed
    session_id = np.repeat(np.arange(1, n_sessions + 1, dtype=np.int64), lengths)
    return ClickLog(session_id=session_id, item_id=raw_ids[items - 1].astype(np.int64), timestamp=timestamp)
