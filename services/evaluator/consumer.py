"""Pure handling of decoded prediction and outcome events: make them durable join state.

Rows are inserted with insert-or-ignore on (system_id, event_id), so a replay after a crash
(records polled again because their offsets were not committed) never double counts.
The StreamWorker commits the offsets only after ``store`` returned, i.e. after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from shared.bus import Decoded
from shared.contracts import OutcomeEvent, PredictionEvent

from .models import OutcomeRow, PredictionRow

__all__ = ["outcome_rows", "prediction_rows", "store", "utc"]


def utc(ts: datetime) -> datetime:
    """Timestamps are stored in UTC so SQLite and PostgreSQL compare them alike."""
    return ts.astimezone(UTC)


def prediction_rows(batch: Sequence[Decoded[PredictionEvent]]) -> list[dict[str, Any]]:
    return [
        {
            "system_id": d.value.system_id,
            "event_id": d.value.event_id,
            "model_version": d.value.model_version,
            "ts": utc(d.value.timestamp),
            "prediction": d.value.prediction,
            "features": d.value.features,
            "partition": d.record.partition,
            "offset": d.record.offset,
        }
        for d in batch
    ]


def outcome_rows(batch: Sequence[Decoded[OutcomeEvent]]) -> list[dict[str, Any]]:
    return [
        {
            "system_id": d.value.system_id,
            "event_id": d.value.event_id,
            "prediction_id": d.value.prediction_id,
            "ts": utc(d.value.timestamp),
            "actual": d.value.actual,
            "partition": d.record.partition,
            "offset": d.record.offset,
        }
        for d in batch
    ]


def store(
    session: Session, table: type[PredictionRow] | type[OutcomeRow], rows: list[dict[str, Any]]
) -> None:
    """Insert rows, ignoring ones already stored (same system and event_id), and commit."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table.__table__).on_conflict_do_nothing()  # type: ignore[union-attr]
    session.execute(stmt, rows)
    session.commit()
