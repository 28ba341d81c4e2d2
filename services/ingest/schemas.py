"""HTTP models of the ingest API."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["IngestResponse", "RecordError"]


class RecordError(BaseModel):
    index: int
    field: str
    reason: str


class IngestResponse(BaseModel):
    accepted: int
    duplicates: list[str] = []
    rejected: list[RecordError] = []
