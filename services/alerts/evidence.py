"""The evidence pack for auditors (ISO/IEC 42001 clauses 9.1, 9.3, 10.1, 10.2): one zip for a
period and an AI system (or all) with the nonconformity records, their corrective actions and
effectiveness reviews, the improvement-log entries and the hash chain's verification, the
evaluations behind every occurrence, the judged windows, the objective versions in force and
the management review; ``manifest.json`` gives each file's SHA-256.

The pack is built in memory from one database session (:func:`build_pack`); the JSON files are
sorted-key, indented UTF-8 with every time in UTC, so two exports of the same history differ
only in ``generated_at``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlmodel import Session, col, select

from shared.contracts import SystemSnapshot

from .crud import verify_log
from .models import LogEntry, LogHead, Nonconformity, Occurrence
from .review import Period, ReviewRows, Window, load_rows, management_review

__all__ = ["FILES", "MANIFEST", "EvidencePack", "build_pack", "sha256"]

MANIFEST = "manifest.json"
FORMAT = "watchkeeper-evidence-pack/1"
FILES = {
    "records.json": "nonconformity records open at some time in the period (clause 10.2)",
    "actions.json": "their corrective and preventive actions",
    "reviews.json": "their effectiveness reviews: the record's fields and every review step",
    "log.json": "continual improvement log entries (clause 10.1) of those records, of the "
    "system's objectives, silences and held-back raises, with each entry's hash",
    "chain_verification.json": "the whole hash chain recomputed at export: ok, or the first "
    "broken entry",
    "evaluations.json": "the evaluation behind every occurrence of those records (clause 9.1)",
    "windows.json": "every judged monitoring window of the period (the attainment's basis)",
    "objectives.json": "objective versions in force during the period (clause 6.2)",
    "management_review.json": "the management review report of the same period (clause 9.3)",
}
"""The pack's files besides the manifest, and what each holds."""

_EXTRA_KINDS = ("raise_inhibited", "raise_silenced", "silence_created", "silence_expired")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as UTC ISO strings, whatever the database handed back."""
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dump(value: Any) -> bytes:
    return orjson.dumps(_plain(value), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


@dataclass(frozen=True, slots=True)
class EvidencePack:
    content: bytes
    """The zip."""
    manifest: dict[str, Any]
    filename: str


def _entry(entry: LogEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "kind": entry.kind,
        "subject": entry.subject,
        "before": entry.before,
        "after": entry.after,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _concerns(entry: LogEntry, period: Period) -> bool:
    """Whether a silence or held-back raise entry concerns the period's system."""
    if period.system_id is None:
        return True
    after = entry.after if isinstance(entry.after, dict) else {}
    if entry.kind.startswith("raise_"):
        return after.get("system_id") == period.system_id
    matchers = after.get("matchers")
    wanted = matchers.get("system_id") if isinstance(matchers, dict) else None
    return wanted in (None, period.system_id)


def _log(session: Session, period: Period, rows: ReviewRows) -> list[LogEntry]:
    extra = session.exec(
        select(LogEntry).where(
            col(LogEntry.kind).in_(_EXTRA_KINDS),
            col(LogEntry.at) >= period.start,
            col(LogEntry.at) < period.end,
        )
    ).all()
    found = {e.seq: e for e in rows.log}
    found.update({e.seq: e for e in extra if _concerns(e, period)})
    return [found[seq] for seq in sorted(found)]


def _reviews(records: Sequence[Nonconformity], log: Sequence[LogEntry]) -> list[dict[str, Any]]:
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        after = entry.after if isinstance(entry.after, dict) else {}
        before = entry.before if isinstance(entry.before, dict) else {}
        if entry.kind in ("effectiveness_watch", "effectiveness_evidence") or (
            entry.kind == "transition"
            and "effectiveness_review" in (after.get("status"), before.get("status"))
        ):
            steps[entry.subject].append(
                {
                    "seq": entry.seq,
                    "at": entry.at,
                    "actor": entry.actor,
                    "kind": entry.kind,
                    "to_state": after.get("status") if entry.kind == "transition" else None,
                    "review_result": after.get("review_result"),
                    "reviewer": after.get("reviewer"),
                    "evidence_status": after.get("status")
                    if entry.kind.startswith("effectiveness_")
                    else None,
                }
            )
    return [
        {
            "nonconformity_id": nc.id,
            "reference": nc.reference,
            "review_method": nc.review_method,
            "review_criteria": nc.review_criteria,
            "review_windows": nc.review_windows,
            "reviewer": nc.reviewer,
            "review_result": nc.review_result,
            "review_evidence": nc.review_evidence,
            "steps": steps[nc.id],
        }
        for nc in records
        if steps[nc.id] or nc.reviewer or nc.review_result
    ]


def _evaluations(
    records: Sequence[Nonconformity], occurrences: Sequence[Occurrence], log: Sequence[LogEntry]
) -> list[dict[str, Any]]:
    by_id = {nc.id: nc for nc in records}
    logged: dict[str, list[int]] = defaultdict(list)
    for entry in log:
        after = entry.after if isinstance(entry.after, dict) else {}
        if isinstance(after.get("evaluation_id"), str):
            logged[after["evaluation_id"]].append(entry.seq)
    found = []
    for occurrence in occurrences:
        nc = by_id[occurrence.nonconformity_id]
        found.append(
            {
                "evaluation_id": occurrence.evaluation_id,
                "nonconformity_id": nc.id,
                "reference": nc.reference,
                "system_id": nc.system_id,
                "objective_id": nc.objective_id,
                "objective_version": occurrence.objective_version,
                "metric": nc.metric,
                "comparator": nc.comparator,
                "threshold": nc.threshold,
                "status": "breach",
                "window_start": occurrence.window_start,
                "window_end": occurrence.window_end,
                "revision": occurrence.revision,
                "value": occurrence.value,
                "withdrawn": occurrence.withdrawn,
                "recorded_at": occurrence.recorded_at,
                "log_seqs": logged.get(occurrence.evaluation_id, []),
            }
        )
    return sorted(found, key=lambda e: (str(e["reference"]), _utc(e["window_start"])))


def _objectives(
    period: Period, rows: ReviewRows, records: Sequence[Nonconformity], log: Sequence[LogEntry]
) -> list[dict[str, Any]]:
    """For each objective: its logged versions in force during the period (the one in force at
    the start and every later one before the end), the registry's current definition and the
    versions the records cite."""
    keys: set[tuple[str, str]] = set(rows.objectives)
    versions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        if entry.kind != "objective_changed" or not entry.subject.startswith("objective:"):
            continue
        system_id, _, objective_id = entry.subject.removeprefix("objective:").partition("/")
        after = entry.after if isinstance(entry.after, dict) else {}
        changed_at = after.get("changed_at")
        versions[(system_id, objective_id)].append(
            {
                **after,
                "changed_at": _utc(datetime.fromisoformat(changed_at))
                if isinstance(changed_at, str)
                else _utc(entry.at),
                "changed_by": entry.actor,
                "log_seq": entry.seq,
            }
        )
        keys.add((system_id, objective_id))
    cited: dict[tuple[str, str], set[int]] = defaultdict(set)
    for nc in records:
        if nc.source == "monitoring":
            cited[(nc.system_id, nc.objective_id)].add(nc.objective_version)
            keys.add((nc.system_id, nc.objective_id))
    found = []
    for key in sorted(k for k in keys if period.covers(k[0])):
        history = sorted(versions[key], key=lambda v: (v["changed_at"], v["log_seq"]))
        before = [v for v in history if v["changed_at"] <= period.start]
        during = [v for v in history if period.start < v["changed_at"] < period.end]
        found.append(
            {
                "system_id": key[0],
                "objective_id": key[1],
                "versions_in_force": before[-1:] + during,
                "current_definition": rows.objectives.get(key),
                "versions_cited_by_records": sorted(cited[key]),
            }
        )
    return found


def _window_order(window: Window) -> tuple[str, str, datetime]:
    return (window.system_id, window.objective_id, window.window_start)


def build_pack(
    *,
    session: Session,
    period: Period,
    systems: Mapping[str, SystemSnapshot],
    now: datetime,
    exported_by: str,
) -> EvidencePack:
    rows = load_rows(session=session, period=period, systems=systems)
    records = [r for r in rows.records if period.covers(r.system_id)]
    ids = [r.id for r in records]
    occurrences: list[Occurrence] = []
    for i in range(0, len(ids), 500):
        occurrences += session.exec(
            select(Occurrence)
            .where(col(Occurrence.nonconformity_id).in_(ids[i : i + 500]))
            .order_by(col(Occurrence.window_start))
        ).all()
    log = _log(session, period, rows)
    verification = verify_log(session=session)
    head = session.get(LogHead, 1)
    broken = (
        session.get(LogEntry, verification.first_broken_seq)
        if verification.first_broken_seq is not None
        else None
    )
    in_pack = {e.seq for e in log}
    files: dict[str, Any] = {
        "records.json": [r.model_dump() for r in records],
        "actions.json": [a.model_dump() for a in rows.actions],
        "reviews.json": _reviews(records, log),
        "log.json": [_entry(e) for e in log],
        "chain_verification.json": {
            "ok": verification.ok,
            "entries": verification.entries,
            "first_broken_seq": verification.first_broken_seq,
            "reason": verification.reason,
            "broken_entry": _entry(broken) if broken is not None else None,
            "broken_entry_in_pack": broken is not None and broken.seq in in_pack,
            "head": {"seq": head.seq, "hash": head.hash} if head is not None else None,
            "verified_at": now,
            "method": "hash = SHA-256(prev_hash hex || canonical entry), canonical = "
            "sorted-key compact JSON of seq, at (UTC, microseconds, no offset), actor, kind, "
            "subject, before, after; the first prev_hash is 64 zeros (docs/alerts.md)",
        },
        "evaluations.json": _evaluations(records, occurrences, log),
        "windows.json": [
            {
                "system_id": w.system_id,
                "objective_id": w.objective_id,
                "window_start": w.window_start,
                "window_end": w.window_end,
                "status": w.status,
                "value": w.value,
                "threshold": w.threshold,
                "evaluation_id": w.evaluation_id,
                "revision": w.revision,
            }
            for w in sorted(
                rows.windows, key=lambda w: (w.system_id, w.objective_id, w.window_start)
            )
        ],
        "objectives.json": _objectives(period, rows, records, log),
        "management_review.json": management_review(period, rows, now=now),
    }
    stamp = _utc(now).timetuple()[:6]
    listed = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as pack:
        for name, content in files.items():
            data = _dump(content)
            pack.writestr(zipfile.ZipInfo(name, date_time=stamp), data, zipfile.ZIP_DEFLATED)
            listed.append(
                {
                    "name": name,
                    "sha256": sha256(data),
                    "bytes": len(data),
                    "items": len(content) if isinstance(content, list) else None,
                    "description": FILES[name],
                }
            )
        manifest = {
            "format": FORMAT,
            "system_id": period.system_id,
            "from": period.start,
            "to": period.end,
            "generated_at": now,
            "exported_by": exported_by,
            "chain_ok": verification.ok,
            "files": listed,
        }
        pack.writestr(zipfile.ZipInfo(MANIFEST, date_time=stamp), _dump(manifest))
    scope = period.system_id or "all"
    name = f"evidence-{scope}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.zip"
    return EvidencePack(content=buffer.getvalue(), manifest=_plain(manifest), filename=name)
