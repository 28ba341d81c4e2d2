"""Tables ingest owns: the events it has seen (duplicate detection) and its instances."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from shared.contracts import IDENTIFIER_MAX_LENGTH
from shared.migrations import MigrationChain

__all__ = ["MIGRATIONS", "IngestInstance", "SeenEvent"]


class SeenEvent(SQLModel, table=True):
    """An event_id ingest took responsibility for, until ``expires_at`` (its label horizon).

    ``owner``/``seq`` name the ingest instance and request that claimed it; the event counts
    as delivered once that instance's ``resolved_seq`` reaches ``seq`` (see dedup.py).
    """

    __tablename__ = "ingest_seen_event"
    __table_args__ = (
        # BRIN on PostgreSQL: rows arrive in expiry order, so a tiny index serves the purge
        Index("ix_ingest_seen_event_expires_at", "expires_at", postgresql_using="brin"),
    )

    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    kind: str = Field(primary_key=True, max_length=16)
    event_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    expires_at: float
    owner: int = Field(sa_column=Column(BigInteger, nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class IngestInstance(SQLModel, table=True):
    """One running ingest process: how far its claims are settled, and until when it lives."""

    __tablename__ = "ingest_instance"

    owner: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    resolved_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    alive_until: float
    started_at: float


MIGRATIONS = MigrationChain(
    "ingest",
    Path(__file__).parent / "migrations",
    tables=(str(SeenEvent.__tablename__), str(IngestInstance.__tablename__)),
)
"""The duplicate store's tables, upgraded when it starts (``watchkeeper migrate ingest``)."""
