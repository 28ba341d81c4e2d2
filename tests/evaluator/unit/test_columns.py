"""One system's rows of a decoded batch as the accumulators read them
(``services.evaluator.columns``): a view on chosen rows, typed columns, and categorical codes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from services.evaluator.columns import ColumnBatch, objects
from services.evaluator.decoding import decode_predictions
from shared.contracts import PredictionEvent, encode

from .events import T0, decoded, prediction


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def test_objects_keep_each_value_whole() -> None:
    found = objects([[1, 2], None, "a", {"k": 1}])
    assert found.shape == (4,) and found.dtype == object
    assert found[0] == [1, 2] and found[1] is None and found[3] == {"k": 1}


def mixed() -> list[PredictionEvent]:
    rows = [
        ("a", 1.0, 1, 5.0, {"1": 0.9}),
        (None, None, 0, None, {"1": 0.2}),
        ("b", 2.5, 1, 7.0, None),
        ("a", 3, "x", 1.0, {"1": 0.6}),
    ]
    return [
        prediction(
            i,
            features={"c": c, "x": x},
            prediction=p,
            latency_ms=lat,
            scores=s,
            attributes={"g": f"g{i % 2}"},
            model_version=f"m{i}",
        )
        for i, (c, x, p, lat, s) in enumerate(rows)
    ]


def test_a_view_holds_only_its_rows_in_their_order() -> None:
    view = ColumnBatch(decoded(mixed(), 40), np.array([3, 0, 2], dtype=np.intp))
    assert view.size == 3
    assert (view.ts - T0).tolist() == [3.0, 0.0, 2.0]
    assert view.offsets.tolist() == [43, 40, 42]
    assert view.column("feature:x", numeric=True).tolist() == [3.0, 1.0, 2.5]
    assert view.column("feature:c", numeric=False).tolist() == ["a", "a", "b"]
    assert view.predicted().tolist() == ["x", 1, 1]
    assert view.latency().tolist() == [1.0, 5.0, 7.0]
    assert view.model_versions() == ["m3", "m0", "m2"]
    assert view.take(["w", "x", "y", "z"]) == ["z", "w", "y"]
    assert view.attribute("g").tolist() == ["g1", "g0", "g0"]


def test_absent_numbers_and_scores_are_nan() -> None:
    whole = ColumnBatch(decoded(mixed()))
    assert whole.size == 4 and whole.rows is None
    x = whole.column("feature:x", numeric=True)
    assert math.isnan(x[1]) and x[[0, 2, 3]].tolist() == [1.0, 2.5, 3.0]
    scores = whole.scores("1")
    assert math.isnan(scores[2]) and scores[[0, 1, 3]].tolist() == [0.9, 0.2, 0.6]
    assert math.isnan(whole.latency()[1])


def test_category_keys_say_which_values_are_missing() -> None:
    view = ColumnBatch(decoded(mixed()), np.array([0, 1, 3], dtype=np.intp))
    keys, missing = view.keys("feature:c")
    assert missing.tolist() == [False, True, False]
    assert keys[~missing].tolist() == ["a", "a"]
    keys, missing = view.keys("prediction")
    assert keys.tolist() == ["1", "0", "x"] and not missing.any()


@pytest.mark.parametrize("rows", [None, [4, 0, 1, 3]])
def test_coded_columns_give_the_same_keys_as_the_values(rows: list[int] | None) -> None:
    values = ["a", None, "b", "a", "c"]
    events = [
        prediction(i, features={"c": v}, prediction=i % 2, timestamp=at(i + 0.25))
        for i, v in enumerate(values)
    ]
    encoded = [encode(e) for e in events]
    batch, bad = decode_predictions(encoded, np.arange(5, dtype=np.int64), body=b"\n".join(encoded))
    assert not bad
    chosen = None if rows is None else np.asarray(rows, dtype=np.intp)
    view = ColumnBatch(batch, chosen)
    coded = view.coded("feature:c")
    assert coded is not None  # one string type: the decoder dictionary-encodes it
    picked = values if rows is None else [values[i] for i in rows]
    assert [None if c < 0 else str(coded.keys[c]) for c in coded.codes] == picked
    keys, missing = view.keys("feature:c")
    assert missing.tolist() == [v is None for v in picked]
    assert [str(k) for k, m in zip(keys, missing, strict=True) if not m] == [
        v for v in picked if v is not None
    ]
    assert view.coded("x1") is None  # neither the prediction nor a feature
