"""Several events in one Kafka record: newline-delimited JSON (pure).

A value on the predictions or outcomes topic is either one event (a JSON object, any
whitespace) or several events of one AI system as NDJSON: one compact JSON object per line,
lines separated by ``\\n``, in the order they were accepted. Ingest writes the second form for
batches: a Python Kafka client spends a few microseconds on every record it sends or
receives, about as much as the rest of the evaluator's work on an event, so records of up to
:data:`MAX_EVENTS` events / :data:`MAX_BYTES` bytes cut that cost to nearly nothing.

Telling the two forms apart needs no header: in a value whose every line (stripped of
surrounding whitespace) starts with ``{`` and ends with ``}``, each line is a whole object.
A single JSON object spread over several lines never looks like that: a line of it that
starts with ``{`` follows a line ending in ``:``, ``,``, ``[`` or ``{``, never ``}``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_BYTES", "MAX_EVENTS", "frame", "unframe"]

MAX_EVENTS = 1000
"""Events per record at most."""
MAX_BYTES = 512 * 1024
"""Bytes per record at most (Kafka refuses records over ``max.message.bytes``, 1 MiB by
default); an event larger than this travels alone."""


def frame(
    values: Sequence[bytes], *, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES
) -> list[tuple[bytes, int, int]]:
    """Pack compact single-line JSON values into records: ``(value, start, stop)`` where
    ``values[start:stop]`` are the events of that record, in order."""
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    records: list[tuple[bytes, int, int]] = []
    start = 0
    size = 0
    for index, value in enumerate(values):
        grown = size + len(value) + (1 if index > start else 0)
        if index > start and (index - start >= max_events or grown > max_bytes):
            records.append((b"\n".join(values[start:index]), start, index))
            start, grown = index, len(value)
        size = grown
    if start < len(values):
        records.append((b"\n".join(values[start:]), start, len(values)))
    return records


def unframe(value: bytes) -> list[bytes] | None:
    """The events of an NDJSON record, or None when the value is one event (no newline, or
    a single JSON object written over several lines)."""
    if b"\n" not in value:
        return None
    lines = [line.strip() for line in value.split(b"\n")]
    lines = [line for line in lines if line]
    if all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
        return lines
    return None
