"""Models, references and shifted analysis chunks on which the estimators meet NannyML's.

Two classifiers, one of them deliberately miscalibrated, and a heteroscedastic regression;
three shift patterns each. Chunks are NannyML's (``chunk_size``), 2,000 rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

CHUNK = 2_000
CHUNKS = 6
REFERENCE_ROWS = 10_000
CLASSIFIER_SHIFTS = ("one_feature", "several_features", "class_balance")
CLASSIFIERS = ("boosted_trees", "overconfident_logistic")
REGRESSION_SHIFTS = ("one_feature", "categories", "mixed")
REGRESSION_EXTRA_SHIFTS = ("threshold",)
"""A fourth pattern, in the benchmark only: x2 moves within its range, above its threshold."""
REGRESSION_MODELS = ("fitted", "misspecified")

FloatArray = npt.NDArray[np.float64]


@contextmanager
def quiet() -> Iterator[None]:
    """Run an oracle (NannyML, LightGBM) without its own warnings failing the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def classification_features(
    n: int, seed: int, shift: str | None = None, k: int = 0
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Four features and a label with an interaction; chunk ``k`` of a shift moves further."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, 4))
    if shift == "one_feature":
        x[:, 0] += 0.25 * k
    elif shift == "several_features":
        x[:, 0] += 0.2 * k
        x[:, 2] -= 0.15 * k
        x[:, 3] *= 1.0 + 0.1 * k
    elif shift == "class_balance":
        x[:, 1] += 0.3 * k  # the positive rate falls chunk by chunk
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 0] * x[:, 2] + 0.5 * np.sin(2 * x[:, 3])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return x, y


@cache
def _trained() -> tuple[HistGradientBoostingClassifier, LogisticRegression]:
    x, y = classification_features(20_000, 0)
    trees = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x, y)
    logistic = LogisticRegression().fit(x, y)
    return trees, logistic


def classifier_scores(model: str, x: FloatArray) -> FloatArray:
    """P(1) as the model gives it: boosted trees (close to calibrated), or a logistic regression
    that misses the interaction and whose logits are tripled (overconfident on purpose)."""
    trees, logistic = _trained()
    if model == "boosted_trees":
        scores: FloatArray = trees.predict_proba(x)[:, 1]
        return scores
    logit = logistic.decision_function(x)
    return 1.0 / (1.0 + np.exp(-3.0 * logit))


@dataclass(frozen=True)
class ClassificationCase:
    reference: pd.DataFrame
    """Columns x0..x3, score (P(1)), prediction, actual."""
    analysis: pd.DataFrame
    """The same columns: CHUNKS chunks of CHUNK rows, in order."""


def classification_case(model: str, shift: str) -> ClassificationCase:
    frames = []
    for seed, shift_of, ks in ((1, None, [0]), (100, shift, list(range(1, CHUNKS + 1)))):
        for k in ks:
            n = REFERENCE_ROWS if shift_of is None else CHUNK
            x, y = classification_features(n, seed + k, shift_of, k)
            scores = classifier_scores(model, x)
            frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
            frame["score"] = scores
            frame["prediction"] = (scores >= 0.5).astype(np.int64)
            frame["actual"] = y
            frames.append(frame)
    return ClassificationCase(frames[0], pd.concat(frames[1:], ignore_index=True))


def regression_frame(
    n: int, seed: int, shift: str | None = None, model: str = "fitted"
) -> pd.DataFrame:
    """y = f(x) + noise whose spread depends on x1, the category and x2: the error of a model
    that learned f well (``fitted``) is what a loss model must predict; a ``misspecified``
    model (x1's slope too small, sin(x2) taken as linear, categories b and c merged) adds a
    mean error that depends on the features too."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0.0, 1.0, n)
    x2 = rng.uniform(-2.0, 2.0, n)
    c = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    if shift == "one_feature":
        x1 = x1 + 1.0
    elif shift == "categories":
        c = rng.choice(["a", "b", "c"], n, p=[0.2, 0.3, 0.5])
    elif shift == "mixed":
        x1 = rng.normal(0.5, 1.5, n)
        c = rng.choice(["a", "b", "c"], n, p=[0.3, 0.3, 0.4])
    elif shift == "threshold":
        x2 = rng.uniform(0.0, 2.0, n)
    spread = 0.3 + 0.5 * np.abs(x1) + np.where(c == "c", 1.0, 0.0) + 0.3 * (x2 > 1)
    signal = 2.0 * x1 + np.sin(x2) + (c == "b") * 1.0
    noise = 0.1 * rng.normal(size=n)
    actual = signal + rng.normal(size=n) * spread
    if model == "fitted":
        prediction = signal + noise
    else:
        prediction = 1.6 * x1 + 0.5 * x2 + 0.5 * (c != "a") + noise
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "prediction": prediction, "actual": actual})
