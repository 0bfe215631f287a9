"""Intervals and tests for the demo's success rates and pointing counts (numpy only)."""

import math

import numpy as np

DRAWS = (
    20_000  # bootstrap draws and sign flips; fixed generator seed, so a report renders the same every time
)


def wilson_interval(percent: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate over ``n`` episodes, in percent."""
    p = percent / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(centre - half, 0.0), 100 * min(centre + half, 1.0)


def seeds_and_episodes_interval(percents: list[float], n: int, draws: int = DRAWS) -> tuple[float, float]:
    """95% interval of the mean success rate over training seeds, each evaluated on ``n`` episodes.

    A two-level (hierarchical) percentile bootstrap: each draw resamples the seeds with replacement, then
    each drawn seed's ``n`` episodes with replacement (a binomial draw at that seed's rate), so the interval
    holds both the spread between trainings and the evaluation noise. One seed: the Wilson interval.
    """
    if len(percents) == 1:
        return wilson_interval(percents[0], n)
    rng = np.random.default_rng(0)
    rates = np.asarray(percents) / 100
    picked = rates[rng.integers(len(rates), size=(draws, len(rates)))]
    means = rng.binomial(n, picked).mean(axis=1) / n
    low, high = np.percentile(means, [2.5, 97.5])
    return 100 * float(low), 100 * float(high)


def sign_flip_p_value(differences: list[float] | np.ndarray, draws: int = DRAWS) -> float:
    """One-sided p-value that paired ``differences`` (e.g. per scene: the sampler's points on the target minus
    random points on it) have a mean above zero: the share of random sign flips whose mean is at least the
    observed one (a paired permutation test; the observed signs count as one flip, so p > 0)."""
    differences = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(draws, len(differences)))
    flipped = (signs * differences).mean(axis=1)
    return float((1 + np.sum(flipped >= differences.mean() - 1e-12)) / (draws + 1))
