"""Temperature scaling (Guo et al., 2017): one scalar that makes probabilities honest.

Fitted on the validation split by the negative log-likelihood of ``softmax(logits / T)``;
the argmax, hence accuracy, is unchanged. NLL is convex in 1/T, so a grid on log T followed by
a golden-section refinement finds the optimum without an optimiser dependency.

Validation splits here are small (~100 images) and often almost separable, and then the plain
NLL optimum sharpens without bound (T -> 0.1 was seen with one error in 90), so served
confidences would claim far more than the data supports. :func:`fit_temperature` therefore
applies the one-standard-error rule (Breiman et al., CART): among temperatures whose mean NLL
exceeds the minimum by at most one standard error of that (paired, per-image) difference, it
takes the largest, i.e. the least confident model the validation data cannot tell apart from
the best. With many images it converges to
the plain optimum (:func:`fit_temperature_mle`).
"""

from __future__ import annotations

import math

import numpy as np

# T from 0.05 (sharpen 20x) to 20 (flatten 20x).
LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
GRID_POINTS = 121
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    log_probs = log_softmax(logits.astype(np.float64) / temperature)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def per_sample_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    log_probs = log_softmax(logits.astype(np.float64) / temperature)
    return -log_probs[np.arange(len(labels)), labels]


def _bisect(function, low: float, high: float, *, minimise: bool) -> float:
    """Golden-section minimum of ``function`` on [low, high], or the root of an increasing one."""
    for _ in range(50):
        if minimise:
            a = high - GOLDEN * (high - low)
            b = low + GOLDEN * (high - low)
            if function(a) < function(b):
                high = b
            else:
                low = a
        else:
            middle = 0.5 * (low + high)
            if function(middle) > 0:
                high = middle
            else:
                low = middle
    return 0.5 * (low + high)


def fit_temperature_mle(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (bounded; 1.0 for an empty split)."""
    if len(labels) == 0:
        return 1.0
    labels = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t))

    grid = np.linspace(*LOG_T_BOUNDS, GRID_POINTS)
    best = int(np.argmin([nll(float(x)) for x in grid]))
    low = float(grid[max(best - 1, 0)])
    high = float(grid[min(best + 1, GRID_POINTS - 1)])
    return math.exp(_bisect(nll, low, high, minimise=True))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The largest temperature whose validation NLL is within one standard error of the best."""
    if len(labels) < 2:
        return 1.0
    labels = np.asarray(labels, dtype=np.int64)
    optimum = fit_temperature_mle(logits, labels)
    best_losses = per_sample_nll(logits, labels, optimum)
    log_optimum, log_high = math.log(optimum), LOG_T_BOUNDS[1]
    root_n = math.sqrt(len(labels))

    def excess(log_t: float) -> float:
        # Paired: how much worse than the optimum, in standard errors of that difference.
        worse = per_sample_nll(logits, labels, math.exp(log_t)) - best_losses
        return float(worse.mean() - worse.std(ddof=1) / root_n)

    if excess(log_high) <= 0:
        return math.exp(log_high)
    return math.exp(_bisect(excess, log_optimum, log_high, minimise=False))
