"""Report routes: the management review (clause 9.3) as JSON and as a printable page, and the
evidence pack for auditors as a zip.

Who: quality managers, admins and auditors read the review and export the pack; SREs read the
review too (it holds the monitoring results they act on and nothing they cannot already read
record by record), but do not export the pack; ML engineers do neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from shared.auth import Principal, Role, require_roles
from shared.contracts import SystemSnapshot
from shared.db import SessionDep

from . import deps
from .evidence import build_pack
from .models import LogEntry, Nonconformity
from .review import (
    CLASSIFICATIONS,
    OPEN_STATES,
    Period,
    bar_chart,
    load_rows,
    management_review,
    period_from_query,
)

__all__ = ["EXPORTERS", "REVIEW_READERS", "router"]

router = APIRouter(tags=["reports"])

REVIEW_READERS = (Role.QUALITY_MANAGER, Role.ADMIN, Role.AUDITOR, Role.SRE)
EXPORTERS = (Role.QUALITY_MANAGER, Role.ADMIN, Role.AUDITOR)
ReviewReader = Annotated[Principal, Depends(require_roles(*REVIEW_READERS))]
Exporter = Annotated[Principal, Depends(require_roles(*EXPORTERS))]
SystemQuery = Annotated[
    str | None, Query(description="AI system id; empty or `all` for every system")
]
FromQuery = Annotated[
    str | None,
    Query(alias="from", description="ISO date or date-time (UTC); default: 90 days before to"),
]
ToQuery = Annotated[
    str | None,
    Query(description="ISO date (that day included) or date-time (excluded); default: now"),
]

CLASSIFICATION_COLOURS = {"major": "#b3261e", "minor": "#c77700", "observation": "#2f6db5"}
STATE_COLOURS = {
    "raised": "#8e24aa",
    "triaged": "#5c6bc0",
    "contained": "#1e88e5",
    "cause_analysed": "#00897b",
    "action_planned": "#7cb342",
    "action_implemented": "#f9a825",
    "effectiveness_review": "#6d4c41",
}


def _systems(request: Request) -> Mapping[str, SystemSnapshot]:
    """The AI systems the registry topic names (empty until its first snapshots arrive)."""
    return dict(deps.registry_view.of(request).systems)


def _known(session: Session, systems: Mapping[str, SystemSnapshot], system_id: str) -> bool:
    if system_id in systems:
        return True
    if session.exec(
        select(Nonconformity.id).where(Nonconformity.system_id == system_id).limit(1)
    ).first():
        return True
    return (
        session.exec(
            select(LogEntry.seq)
            .where(col(LogEntry.subject).startswith(f"objective:{system_id}/"))
            .limit(1)
        ).first()
        is not None
    )


def _period(
    session: Session,
    systems: Mapping[str, SystemSnapshot],
    system: str | None,
    start: str | None,
    end: str | None,
) -> Period:
    """422 naming the field for a bad bound, 404 for a system nobody knows."""
    try:
        period = period_from_query(system, start, end, now=datetime.now(UTC))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if period.system_id is not None and not _known(session, systems, period.system_id):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"system: no AI system {period.system_id!r} is known to the alerts service",
        )
    return period


def _review(
    session: Session, period: Period, systems: Mapping[str, SystemSnapshot]
) -> dict[str, Any]:
    """The management review of ``period``, as of now."""
    rows = load_rows(session=session, period=period, systems=systems)
    return management_review(period, rows, now=datetime.now(UTC))


def _actor(user: Principal) -> str:
    return user.subject or "anonymous"


@router.get("/v1/reports/management-review")
def management_review_report(
    request: Request,
    session: SessionDep,
    _user: ReviewReader,
    system: SystemQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
) -> dict[str, Any]:
    """The management review (ISO/IEC 42001 9.3) of ``[from, to)`` for one system or all."""
    systems = _systems(request)
    period = _period(session, systems, system, start, to)
    return _review(session, period, systems)


@router.get(
    "/v1/evidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the evidence pack"}},
)
def evidence_pack(
    request: Request,
    session: SessionDep,
    user: Exporter,
    system: SystemQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
) -> Response:
    """The evidence pack of ``[from, to)``: a zip whose manifest.json gives each file's
    SHA-256 (docs/alerts.md, "Management review and evidence pack")."""
    systems = _systems(request)
    period = _period(session, systems, system, start, to)
    pack = build_pack(
        session=session,
        period=period,
        systems=systems,
        now=datetime.now(UTC),
        exported_by=_actor(user),
    )
    return Response(
        content=pack.content,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{pack.filename}"',
            "X-Evidence-Chain-Ok": "true" if pack.manifest["chain_ok"] else "false",
        },
    )


# --- the page -------------------------------------------------------------------------------


def _bucket_label(start: str, unit: str) -> str:
    at = datetime.fromisoformat(start)
    return at.strftime("%b %Y") if unit == "month" else at.strftime("%d %b")


def _charts(report: dict[str, Any]) -> dict[str, Any]:
    ncs = report["nonconformities"]
    labels = [_bucket_label(t["start"], ncs["trend_unit"]) for t in ncs["trend"]]
    raised = bar_chart(
        labels,
        [
            (c, CLASSIFICATION_COLOURS[c], [t["raised"][c] for t in ncs["trend"]])
            for c in CLASSIFICATIONS
        ],
    )
    backlog = bar_chart(
        labels,
        [(s, STATE_COLOURS[s], [t["open_by_state"][s] for t in ncs["trend"]]) for s in OPEN_STATES],
    )
    return {"raised": raised, "backlog": backlog}


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def management_review_page(
    request: Request,
    session: SessionDep,
    user: ReviewReader,
    system: SystemQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
) -> HTMLResponse:
    """The management review as a printable page (server-side SVG charts, print stylesheet);
    a bad period shows the form again with the reason."""
    systems = _systems(request)
    context: dict[str, Any] = {
        "form": {"system": system or "", "from": start or "", "to": to or ""},
        "systems": sorted(systems),
        "can_export": not user.authenticated or user.role in EXPORTERS,
        "error": None,
        "report": None,
    }
    code = status.HTTP_200_OK
    try:
        period = _period(session, systems, system, start, to)
    except HTTPException as exc:
        context["error"], code = exc.detail, exc.status_code
    else:
        report = _review(session, period, systems)
        query = urlencode(
            {
                "system": period.system_id or "",
                "from": report["from"],
                "to": report["to"],
            }
        )
        context.update(
            report=report,
            charts=_charts(report),
            query=query,
            classification_colours=CLASSIFICATION_COLOURS,
            state_colours=STATE_COLOURS,
        )
    return deps.templates.of(request).TemplateResponse(
        request, "review.html", context, status_code=code
    )
