"""Tables the evaluator owns: durable join state, checkpoints, evaluations, cached references.

``evaluator_join`` and ``evaluator_waiting`` are the join state: one row per prediction, and one
per outcome whose prediction has not arrived yet, kept until the label horizon has passed. It
lives in the database, not in memory, so days of pending predictions fit and every evaluator
instance of the group can take a partition over. ``evaluator_partition`` and
``evaluator_window`` are the checkpoint of each stream partition (offsets, watermarks, open
window accumulators), ``evaluator_label_window`` the label accumulators of windows still open
to revisions; all are written in the same transaction as the evaluations they led to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from shared.contracts import IDENTIFIER_MAX_LENGTH

__all__ = [
    "EvaluationRow",
    "JoinRow",
    "LabelWindowCheckpoint",
    "PartitionCheckpoint",
    "ReferenceRow",
    "ReferenceValuesRow",
    "WaitingOutcome",
    "WindowCheckpoint",
]


class JoinRow(SQLModel, table=True):
    """A prediction, kept until its label horizon has passed, for the outcome that joins it."""

    __tablename__ = "evaluator_join"
    __table_args__ = (
        Index("ix_evaluator_join_system_ts", "system_id", "ts"),
        {"sqlite_with_rowid": False},  # one B-tree keyed by (system_id, event_id), not two
    )

    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    event_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    ts: float
    """Prediction time (epoch s)."""
    arrival_wm: float | None = None
    """The prediction watermark when the prediction arrived (decides which windows took it)."""
    prediction: str = Field(sa_column=Column(Text, nullable=False))
    """JSON of the predicted value; ``scores`` and ``attributes`` are JSON too."""
    scores: str | None = Field(default=None, sa_column=Column(Text))
    attributes: str | None = Field(default=None, sa_column=Column(Text))
    pred_partition: int
    pred_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    labelled: bool = False
    """An outcome joined it (a second outcome is a duplicate)."""


class WaitingOutcome(SQLModel, table=True):
    """An outcome whose prediction has not arrived; joined when it does, or counted as an
    unknown outcome once the label horizon has passed."""

    __tablename__ = "evaluator_waiting"
    __table_args__ = (
        Index("ix_evaluator_waiting_system_ts", "system_id", "ts"),
        {"sqlite_with_rowid": False},
    )

    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    prediction_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    ts: float
    """Outcome time (epoch s)."""
    actual: str = Field(sa_column=Column(Text, nullable=False))
    label_time: float
    out_partition: int
    out_offset: int = Field(sa_column=Column(BigInteger, nullable=False))


class PartitionCheckpoint(SQLModel, table=True):
    __tablename__ = "evaluator_partition"

    stream: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    epoch: int = 0
    """Bumped by each instance that takes the partition; a stale owner's checkpoint fails."""
    offsets: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime | None = None


class WindowCheckpoint(SQLModel, table=True):
    __tablename__ = "evaluator_window"

    stream: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    size: int = Field(primary_key=True)
    start: int = Field(primary_key=True)
    state: str = Field(sa_column=Column(Text, nullable=False))


class LabelWindowCheckpoint(SQLModel, table=True):
    """A window's label accumulators (emitted revisions, labels waiting for their revision),
    kept until the system's label horizon has passed."""

    __tablename__ = "evaluator_label_window"

    stream: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    size: int = Field(primary_key=True)
    start: int = Field(primary_key=True)
    state: str = Field(sa_column=Column(Text, nullable=False))


class EvaluationRow(SQLModel, table=True):
    __tablename__ = "evaluator_evaluation"
    __table_args__ = (
        Index("ix_evaluator_evaluation_objective", "objective_id", "window_end"),
        Index("ix_evaluator_evaluation_window", "system_id", "window_s", "size"),
    )

    id: str = Field(primary_key=True, max_length=255)
    system_id: str = Field(index=True, max_length=IDENTIFIER_MAX_LENGTH)
    objective_id: str = Field(max_length=IDENTIFIER_MAX_LENGTH)
    objective_version: int
    window_start: datetime
    window_end: datetime
    window_s: int
    """Window start as epoch seconds (with ``size``: how the evaluator finds a window again)."""
    size: int
    revision: int
    label_cutoff: int | None = None
    """Index k of the label cut-off a label metric was evaluated at (None: not a label metric)."""
    status: str
    value: float | None
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class ReferenceRow(SQLModel, table=True):
    """Reference profiles fetched from the registry, so a restart does not need it."""

    __tablename__ = "evaluator_reference"

    hash: str = Field(primary_key=True, max_length=128)
    profile: str = Field(sa_column=Column(Text, nullable=False))


class ReferenceValuesRow(SQLModel, table=True):
    """Distribution blobs of reference columns (``NumericReference.values_sha256``), fetched
    from the registry once, so a restart does not need it."""

    __tablename__ = "evaluator_reference_values"

    sha256: str = Field(primary_key=True, max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
