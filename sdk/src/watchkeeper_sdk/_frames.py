"""Turning a pandas DataFrame into prediction events for ``log_batch`` (pandas is optional)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from watchkeeper_sdk._errors import InvalidEventError

__all__ = ["FrameColumns", "rows_from_frame"]


class FrameColumns:
    """Which DataFrame columns hold what; every other column is a feature."""

    def __init__(
        self,
        *,
        prediction: str = "prediction",
        event_id: str = "event_id",
        timestamp: str = "timestamp",
        model_version: str = "model_version",
        latency_ms: str = "latency_ms",
        features: Sequence[str] | None = None,
        attributes: Sequence[str] = (),
        scores: Mapping[str, str] | None = None,
    ) -> None:
        self.prediction = prediction
        self.event_id = event_id
        self.timestamp = timestamp
        self.model_version = model_version
        self.latency_ms = latency_ms
        self.features = features
        self.attributes = tuple(attributes)
        self.scores = dict(scores or {})


def _values(frame: Any, column: Any) -> list[Any]:
    """A column as Python values, pandas' missing markers (NA, NaT) turned into None."""
    import pandas as pd

    na, nat = pd.NA, pd.NaT
    return [None if value is na or value is nat else value for value in frame[column].tolist()]


def _event_id(value: Any) -> Any:
    """Integer request ids are common in frames (and become floats next to NaN)."""
    if type(value) is int:
        return str(value)
    if type(value) is float and value.is_integer():
        return str(int(value))
    return value


def _present(value: Any) -> bool:
    return value is not None and not (type(value) is float and value != value)


def rows_from_frame(frame: Any, columns: FrameColumns) -> Iterator[dict[str, Any]]:
    """Keyword arguments for one prediction event per row, in row order."""
    names = list(frame.columns)
    if columns.prediction not in names:
        raise InvalidEventError(
            f"log_batch needs a {columns.prediction!r} column (the model's output); got {names}"
        )
    reserved = {
        columns.prediction,
        columns.event_id,
        columns.timestamp,
        columns.model_version,
        columns.latency_ms,
        *columns.attributes,
        *columns.scores.values(),
    }
    missing = [c for c in (*columns.attributes, *columns.scores.values()) if c not in names]
    if columns.features is not None:
        missing += [c for c in columns.features if c not in names]
    if missing:
        raise InvalidEventError(f"log_batch: columns not in the DataFrame: {missing}")
    feature_names = (
        list(columns.features)
        if columns.features is not None
        else [c for c in names if c not in reserved]
    )

    def optional(column: str) -> list[Any] | None:
        return _values(frame, column) if column in names else None

    feature_values = [(str(name), _values(frame, name)) for name in feature_names]
    attribute_values = [(str(name), _values(frame, name)) for name in columns.attributes]
    score_values = [(label, _values(frame, name)) for label, name in columns.scores.items()]
    predictions = _values(frame, columns.prediction)
    event_ids = optional(columns.event_id)
    timestamps = optional(columns.timestamp)
    model_versions = optional(columns.model_version)
    latencies = optional(columns.latency_ms)

    for row in range(len(predictions)):
        scores = {label: values[row] for label, values in score_values if _present(values[row])}
        yield {
            "features": {name: values[row] for name, values in feature_values},
            "prediction": predictions[row],
            "event_id": _event_id(event_ids[row])
            if event_ids and _present(event_ids[row])
            else None,
            "timestamp": timestamps[row] if timestamps and _present(timestamps[row]) else None,
            "model_version": (
                model_versions[row] if model_versions and _present(model_versions[row]) else None
            ),
            "latency_ms": latencies[row] if latencies and _present(latencies[row]) else None,
            "attributes": {name: values[row] for name, values in attribute_values} or None,
            "scores": scores or None,
        }
