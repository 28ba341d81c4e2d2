"""The quality manager's web UI (ISO/IEC 42001 clause 10.2): a queue of nonconformities, the
record page with its evidence chart and lifecycle forms, a page per AI system, sign-in.

Server-rendered (Jinja2), no script needed: every form is a POST answered by a redirect
(303) back to the page, so reloading never resubmits. Writes go through the same ``crud``
functions and the same write path as the JSON API (``deps.Writes``: one writer, commit,
relay and notifier woken), so each records the signed-in token's subject in the improvement
log. The lifecycle guards are ``semantics.check_transition`` on ``crud.record_facts``: a step
whose guard fails is shown disabled with the guard's own message.

Sign-in: the user pastes a user token (``watchkeeper tokens issue``); it is kept in an HttpOnly
SameSite=Lax cookie and :class:`SessionCookie` turns the cookie back into the
``Authorization`` header the API's checks read. Forms carry a CSRF field derived from the token.
In open mode (no ``auth_secret``) there is no sign-in and everyone acts as ``anonymous``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import case, func
from sqlmodel import Session, col, select
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import (
    OPEN_PRINCIPAL,
    Principal,
    Role,
    TokenError,
    bearer_token,
    verify_token,
)
from shared.contracts import Objective
from shared.db import SessionDep
from shared.errors import status_of

from . import crud, deps
from .charts import COMPARATOR_SIGNS, Annotation, OccurrenceMark, WindowPoint, evidence_chart
from .errors import ANSWERS, AlertsError, NotFound, TransitionError
from .models import CorrectiveAction, LogEntry, Nonconformity, Occurrence, WindowVerdict
from .reports_api import EXPORTERS
from .schemas import ActionCreate, ActionUpdate, ClassificationChange, TransitionRequest
from .semantics import ORDER, TERMINAL, TRANSITIONS, State, check_transition

__all__ = ["COOKIE", "SessionCookie", "router"]

router = APIRouter(include_in_schema=False)

COOKIE = "wk_session"
PAGE_SIZE = 25
CHART_WINDOWS = 240
"""At most this many windows in a record's chart (the latest ones)."""
SYSTEM_CHART_WINDOWS = 48
WRITERS = frozenset({Role.QUALITY_MANAGER, Role.ADMIN})
CLASSIFICATIONS = ("major", "minor", "observation")
ACTION_STATUSES = ("planned", "in_progress", "implemented", "cancelled")
ROOT_CAUSE_METHODS = {"five_whys": "5 whys", "fishbone": "Fishbone", "other": "Other"}
SORTS: dict[str, Any] = {
    "raised": col(Nonconformity.raised_at),
    "due": col(Nonconformity.due_at),
    "reference": col(Nonconformity.reference),
    "system": col(Nonconformity.system_id),
    "owner": col(Nonconformity.owner),
    "occurrences": col(Nonconformity.occurrences),
    "classification": case(
        {c: i for i, c in enumerate(CLASSIFICATIONS)}, value=col(Nonconformity.classification)
    ),
    "state": case(
        {s.value: i for i, s in enumerate((*ORDER, State.REJECTED, State.WITHDRAWN))},
        value=col(Nonconformity.status),
    ),
}
STEP_LABELS = {
    State.TRIAGED: "Accept the record (triage)",
    State.REJECTED: "Reject the record",
    State.CONTAINED: "Record the containment",
    State.CAUSE_ANALYSED: "Record the root cause",
    State.ACTION_PLANNED: "Confirm the action plan",
    State.ACTION_IMPLEMENTED: "Confirm the actions are implemented",
    State.EFFECTIVENESS_REVIEW: "Start the effectiveness review",
    State.CLOSED: "Close: the actions were effective",
}
_SUPPLIED_BY_FORM: dict[State, dict[str, Any]] = {
    State.CONTAINED: {"containment": "(from the form)"},
    State.CAUSE_ANALYSED: {"root_cause_method": "other", "root_cause": "(from the form)"},
    State.EFFECTIVENESS_REVIEW: {"reviewer": "\x00(from the form)"},
    State.CLOSED: {"review_result": "confirmed"},
}
"""What each step's form sends, so a guard it would satisfy does not disable its button."""
DONE = {
    "transition": "The step was recorded.",
    "action": "The corrective action was planned.",
    "action_updated": "The corrective action was updated.",
    "classification": "The classification was changed.",
    "analysis": "The root cause analysis was revised.",
}


# --- sign-in --------------------------------------------------------------------------------


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _path(request: Request, name: str, **params: Any) -> str:
    """A page's path under wherever the app is mounted (``/alerts`` in the embedded platform)."""
    return _root(request) + str(request.app.url_path_for(name, **params))


def _secret(request: Request) -> SecretStr | None:
    return deps.settings.of(request).auth_secret


def _viewer(request: Request) -> Principal | None:
    """Who is looking: the token's principal, everyone in open mode, None when not signed in."""
    secret = _secret(request)
    if secret is None:
        return OPEN_PRINCIPAL
    token = bearer_token(request)
    if token is None:
        return None
    try:
        return verify_token(secret, token)
    except TokenError:
        return None


def _csrf(request: Request) -> str:
    """The form field that proves a POST came from a page this session rendered."""
    secret, token = _secret(request), bearer_token(request)
    if secret is None or token is None:
        return "open"
    key = secret.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:32]


def _signed_in(request: Request) -> Principal:
    """The viewer, or a redirect (303) to the sign-in page that comes back here."""
    viewer = _viewer(request)
    if viewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = _path(request, "login") + "?" + urllib.parse.urlencode({"next": target})
        raise HTTPException(status.HTTP_303_SEE_OTHER, "sign in", headers={"Location": login})
    return viewer


def _writer(request: Request, csrf: str) -> Principal:
    viewer = _signed_in(request)
    if viewer.authenticated and viewer.role not in WRITERS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"role {viewer.role.value!r} reads only: quality managers and admins change records",
        )
    if not hmac.compare_digest(csrf.encode(), _csrf(request).encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "csrf: the form is stale, reload the page")
    return viewer


def _can_write(viewer: Principal) -> bool:
    return not viewer.authenticated or viewer.role in WRITERS


def _actor(viewer: Principal) -> str:
    return viewer.subject or "anonymous"


def _safe_next(request: Request, target: str) -> str:
    """Only a path of this app (no other host, no scheme) is a place to go back to."""
    root = _root(request) + "/"
    if target.startswith(root) and not target.startswith("//") and "\\" not in target:
        return target
    return _path(request, "queue")


class SessionCookie:
    """ASGI middleware in front of the request guard: a request without an ``Authorization``
    header but with the sign-in cookie carries the cookie's token as a bearer token. Reads
    anywhere and the UI's own forms accept it; the JSON API's writes still need the header
    (a cookie is sent by the browser on its own, a header is not). A UI form posted with an
    expired or forged cookie is sent to the sign-in page instead of getting a bare 401."""

    def __init__(self, app: ASGIApp, *, auth_secret: SecretStr | None) -> None:
        self.app = app
        self.auth_secret = auth_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.auth_secret is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = _cookie(headers.get("cookie", ""), COOKIE)
        if token is None or "authorization" in headers:
            await self.app(scope, receive, send)
            return
        root = str(scope.get("root_path", "")).rstrip("/")
        path = str(scope["path"])
        path = path[len(root) :] if root and path.startswith(root) else path
        if scope["method"] not in ("GET", "HEAD"):
            if path.startswith("/v1/"):
                await self.app(scope, receive, send)
                return
            try:
                verify_token(self.auth_secret, token)
            except TokenError:
                response = RedirectResponse(f"{root}/login?expired=1", status.HTTP_303_SEE_OTHER)
                response.delete_cookie(COOKIE, path=f"{root}/")
                await response(scope, receive, send)
                return
        scope = dict(scope)
        scope["headers"] = [
            *scope["headers"],
            (b"authorization", f"Bearer {token}".encode("latin-1")),
        ]
        await self.app(scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return urllib.parse.unquote(value)
    return None


@router.get("/login", response_class=HTMLResponse, name="login")
def login_page(
    request: Request,
    next_: Annotated[str, Query(alias="next")] = "",
    expired: bool = False,
) -> Response:
    error = "Your session has expired: sign in again." if expired else None
    return _render(request, "login.html", {"next": next_, "error": error})


@router.post("/login", name="login_submit")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next_: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Check the pasted token and keep it in a session cookie (gone when the browser closes;
    the token's own expiry still applies to every request)."""
    secret = _secret(request)
    if secret is None:
        return RedirectResponse(_safe_next(request, next_), status.HTTP_303_SEE_OTHER)
    token = token.strip()
    try:
        verify_token(secret, token)
    except TokenError as exc:
        context = {"next": next_, "error": f"token: {exc}", "viewer": None}
        return _render(request, "login.html", context, status.HTTP_401_UNAUTHORIZED)
    response = RedirectResponse(_safe_next(request, next_), status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        path=_root(request) + "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", name="logout")
def logout(request: Request) -> Response:
    response = RedirectResponse(_path(request, "login"), status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path=_root(request) + "/")
    return response


# --- rendering ------------------------------------------------------------------------------

NONE = "\N{EN DASH}"
"""What a page shows for a missing value."""


def _when(at: datetime | None) -> str:
    if at is None:
        return NONE
    return _utc(at).strftime("%Y-%m-%d %H:%M UTC")


def _day(at: datetime | None) -> str:
    return NONE if at is None else _utc(at).strftime("%Y-%m-%d")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _age(at: datetime | None, now: datetime) -> str:
    if at is None:
        return NONE
    seconds = (now - _utc(at)).total_seconds()
    if seconds < 3600:
        return f"{max(int(seconds // 60), 0)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def _number(value: float | None) -> str:
    return NONE if value is None else f"{value:.4g}"


def _render(
    request: Request, template: str, context: dict[str, Any], code: int = status.HTTP_200_OK
) -> HTMLResponse:
    viewer = context.get("viewer", _viewer(request))
    now = datetime.now(UTC)
    sections = {"system.html": "systems", "systems.html": "systems", "evidence.html": "evidence"}
    section = sections.get(template, "queue")
    templates = deps.templates.of(request)
    base = {
        "path": lambda name, **params: _path(request, name, **params),
        "root": _root(request),
        "viewer": viewer,
        "open_mode": _secret(request) is None,
        "can_write": viewer is not None and _can_write(viewer),
        "csrf": _csrf(request),
        "when": _when,
        "day": _day,
        "age": lambda at: _age(at, now),
        "number": _number,
        "now": now,
        "none_text": NONE,
        "overdue": lambda nc: bool(nc.open and nc.due_at is not None and _utc(nc.due_at) < now),
        "action_overdue": lambda action: bool(
            action.status in ("planned", "in_progress") and _utc(action.due_at) < now
        ),
        "label": lambda value: str(value or "").replace("_", " "),
        "sign": lambda comparator: COMPARATOR_SIGNS.get(comparator, comparator),
        "section": section,
    }
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {**base, **context}, status_code=code
    )
    return response


# --- the queue ------------------------------------------------------------------------------


def _choice(name: str, value: str, allowed: Sequence[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(422, f"{name}: unknown value {value!r} (one of {', '.join(allowed)})")
    return value


STATES = tuple(s.value for s in (*ORDER, State.REJECTED, State.WITHDRAWN))


@router.get("/", response_class=HTMLResponse, name="queue")
def queue(
    request: Request,
    session: SessionDep,
    system: str = "",
    state: str = "",
    classification: str = "",
    owner: str = "",
    overdue: str = "",
    age: str = "",
    show: str = "open",
    sort: str = "raised",
    direction: Annotated[str, Query(alias="dir")] = "desc",
    page: int = 1,
    refresh: str = "",
) -> Response:
    """The nonconformity queue. Every filter is in the query string, so a reload, a bookmark
    or the way back from a record keeps the user's place."""
    viewer = _signed_in(request)
    state_v = _choice("state", state, STATES)
    class_v = _choice("classification", classification, CLASSIFICATIONS)
    show_v = _choice("show", show, ("open", "closed", "all")) or "open"
    sort_v = _choice("sort", sort, tuple(SORTS)) or "raised"
    dir_v = _choice("dir", direction, ("asc", "desc")) or "desc"
    min_age: float | None = None
    if age:
        try:
            min_age = float(age)
        except ValueError:
            raise HTTPException(422, "age: a number of days") from None
        if not math.isfinite(min_age) or min_age < 0:
            raise HTTPException(422, "age: a number of days, 0 or more")
    now = datetime.now(UTC)
    common = crud.nonconformity_filters(
        system_id=system or None,
        classification=class_v,
        owner=owner or None,
        overdue=bool(overdue),
        min_age_days=min_age,
        open_only=show_v == "open" and state_v is None,
        now=now,
    )
    if show_v == "closed" and state_v is None:
        common.append(col(Nonconformity.open).is_(False))
    counts = dict(
        session.exec(
            select(Nonconformity.status, func.count())
            .where(*common)
            .group_by(col(Nonconformity.status))
        ).all()
    )
    where = [*common, *([col(Nonconformity.status) == state_v] if state_v else [])]
    total = crud.count(session, select(Nonconformity).where(*where))
    pages = max(math.ceil(total / PAGE_SIZE), 1)
    page = min(max(page, 1), pages)
    order = SORTS[sort_v]
    rows = session.exec(
        select(Nonconformity)
        .where(*where)
        .order_by(
            order.asc() if dir_v == "asc" else order.desc(),
            col(Nonconformity.raised_at).desc(),
            col(Nonconformity.id),
        )
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    params = {
        "system": system,
        "state": state_v or "",
        "classification": class_v or "",
        "owner": owner,
        "overdue": "1" if overdue else "",
        "age": age,
        "show": show_v,
        "sort": sort_v,
        "dir": dir_v,
        "refresh": "1" if refresh else "",
    }

    def link(**changes: Any) -> str:
        merged = {**params, "page": str(page), **{k: str(v) for k, v in changes.items()}}
        query = urllib.parse.urlencode(
            {k: v for k, v in merged.items() if v != "" and not (k == "page" and v == "1")}
        )
        return _path(request, "queue") + (f"?{query}" if query else "")

    def sort_link(key: str) -> str:
        """Sort by ``key``; again on the sorted column flips the direction."""
        if key == sort_v:
            return link(sort=key, dir="asc" if dir_v == "desc" else "desc", page=1)
        return link(sort=key, dir="desc" if key in ("raised", "occurrences") else "asc", page=1)

    systems = sorted(
        set(session.exec(select(Nonconformity.system_id).distinct()).all())
        | set(_registry_systems(request))
    )
    owners = sorted(
        o for o in session.exec(select(Nonconformity.owner).distinct()).all() if o is not None
    )
    back = urllib.parse.urlencode({k: v for k, v in {**params, "page": str(page)}.items() if v})
    return _render(
        request,
        "queue.html",
        {
            "viewer": viewer,
            "rows": rows,
            "counts": counts,
            "states": STATES,
            "classifications": CLASSIFICATIONS,
            "systems": systems,
            "owners": owners,
            "params": params,
            "total": total,
            "page": page,
            "pages": pages,
            "link": link,
            "sort_link": sort_link,
            "back": back,
            "refresh": bool(refresh),
        },
    )


def _registry_systems(request: Request) -> list[str]:
    return list(deps.registry_view.of(request).systems)


def _objective_now(request: Request, system_id: str, objective_id: str) -> Objective | None:
    return deps.registry_view.of(request).objective(system_id, objective_id)


# --- the record -----------------------------------------------------------------------------


@dataclass
class StepView:
    """One next legal step of the record, as its form shows it."""

    target: str
    label: str
    blocked: str | None
    """The guard's message when the step is not possible yet (the button is disabled)."""
    back: bool = False
    """Back to analysis after a not-effective review."""
    needs_reason: bool = False


@dataclass
class ObjectiveView:
    version: int
    metric: str
    comparator: str
    threshold: float | None
    owner: str | None = None
    rationale: str = ""
    references: list[str] = field(default_factory=list)
    window_seconds: int | None = None
    changed_by: str | None = None
    changed_at: str | None = None
    change_reason: str = ""
    current_version: int | None = None
    source: str = "log"


def _steps(session: Session, nc: Nonconformity) -> list[StepView]:
    current = State(nc.status)
    targets = sorted(
        TRANSITIONS.get(current, frozenset()),
        key=lambda s: (s is State.REJECTED, ORDER.index(s) if s in ORDER else 99),
    )
    steps = []
    for target in targets:
        back = current is State.EFFECTIVENESS_REVIEW and target is State.CAUSE_ANALYSED
        supplied = {"review_result": "not_effective"} if back else _SUPPLIED_BY_FORM.get(target, {})
        facts = crud.record_facts(session=session, nc=nc, data=supplied)
        blocked = None
        try:
            check_transition(facts, target, reason="(from the form)")
        except TransitionError as exc:
            blocked = str(exc)
        label = "Not effective: back to root cause analysis" if back else STEP_LABELS[target]
        steps.append(
            StepView(
                target=target.value,
                label=label,
                blocked=blocked,
                back=back,
                needs_reason=target is State.CLOSED and facts.evidence_breached,
            )
        )
    return steps


def _objective(request: Request, session: Session, nc: Nonconformity) -> ObjectiveView | None:
    """The objective version the record was raised under: its ``objective_changed`` log entry
    (the registry's history as the alerts service saw it), else the registry's current one."""
    if nc.source != "monitoring":
        return None
    current = _objective_now(request, nc.system_id, nc.objective_id)
    view = ObjectiveView(
        version=nc.objective_version,
        metric=nc.metric,
        comparator=nc.comparator,
        threshold=nc.threshold,
        current_version=current.version if current else None,
    )
    subject = f"objective:{nc.system_id}/{nc.objective_id}"
    for entry in session.exec(
        select(LogEntry).where(LogEntry.subject == subject).order_by(col(LogEntry.seq).desc())
    ).all():
        after = entry.after if isinstance(entry.after, dict) else {}
        if after.get("version") == nc.objective_version:
            view.owner = after.get("owner")
            view.rationale = str(after.get("rationale") or "")
            view.references = list(after.get("references") or [])
            view.window_seconds = after.get("window_seconds")
            view.changed_by = entry.actor
            view.changed_at = str(after.get("changed_at") or "")[:16].replace("T", " ")
            view.change_reason = str(after.get("change_reason") or "")
            break
    if current is not None and current.version == nc.objective_version:
        view.owner = current.owner
        view.rationale = current.rationale
        view.references = list(current.references)
        view.window_seconds = current.window_seconds
        view.changed_by = view.changed_by or current.changed_by
        view.change_reason = view.change_reason or current.change_reason
        view.source = "registry"
    return view


def _series(
    session: Session, fingerprint: str, limit: int
) -> tuple[list[WindowPoint], list[WindowVerdict]]:
    rows = list(
        session.exec(
            select(WindowVerdict)
            .where(WindowVerdict.fingerprint == fingerprint)
            .order_by(col(WindowVerdict.window_start).desc())
            .limit(limit)
        ).all()
    )
    rows.reverse()
    points = [
        WindowPoint(
            start=v.window_start,
            end=v.window_end or v.window_start,
            value=v.value,
            threshold=v.threshold,
            status=v.status,
            revision=v.revision,
            objective_version=v.objective_version,
        )
        for v in rows
        if v.window_end is not None  # verdicts from before revision 0004 have no series
    ]
    return points, rows


def _record_chart(
    session: Session, nc: Nonconformity, occurrences: Sequence[Occurrence]
) -> tuple[Any, list[WindowPoint], int]:
    points, _rows = _series(session, nc.fingerprint, CHART_WINDOWS)
    total = crud.count(
        session, select(WindowVerdict).where(WindowVerdict.fingerprint == nc.fingerprint)
    )
    since = nc.review_evidence.get("since") if nc.review_evidence else None
    annotations = []
    if isinstance(since, str):
        annotations.append(Annotation(datetime.fromisoformat(since), "actions implemented"))
    chart = evidence_chart(
        points,
        chart_id="evidence-chart",
        title=f"{nc.metric} per window of {nc.system_id} / {nc.objective_id}",
        metric=nc.metric,
        comparator=nc.comparator,
        threshold=nc.threshold,
        occurrences=[
            OccurrenceMark(start=o.window_start, value=o.value, withdrawn=o.withdrawn)
            for o in occurrences
        ],
        annotations=annotations,
    )
    return chart, points, total


def _find(session: Session, ref: str) -> Nonconformity:
    try:
        return crud.find(session=session, nc_id=ref)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _record_page(
    request: Request,
    session: Session,
    nc: Nonconformity,
    viewer: Principal,
    *,
    error: str | None = None,
    failed: str | None = None,
    values: dict[str, Any] | None = None,
    code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    occurrences = session.exec(
        select(Occurrence)
        .where(Occurrence.nonconformity_id == nc.id)
        .order_by(col(Occurrence.window_start))
    ).all()
    actions = crud.actions_of(session=session, nc_id=nc.id)
    log = session.exec(
        select(LogEntry).where(LogEntry.subject == nc.id).order_by(col(LogEntry.seq))
    ).all()
    chart, points, total_windows = (
        _record_chart(session, nc, occurrences) if nc.source == "monitoring" else (None, [], 0)
    )
    done = DONE.get(request.query_params.get("done", ""))
    back = request.query_params.get("from", "")
    queue = _path(request, "queue")
    return _render(
        request,
        "record.html",
        {
            "viewer": viewer,
            "nc": nc,
            "objective": _objective(request, session, nc),
            "occurrences": occurrences,
            "actions": actions,
            "log": log,
            "chart": chart,
            "points": points,
            "total_windows": total_windows,
            "steps": [] if State(nc.status) in TERMINAL else _steps(session, nc),
            "terminal": State(nc.status) in TERMINAL,
            "action_states": {s.value for s in crud.ACTION_STATES},
            "action_statuses": ACTION_STATUSES,
            "classifications": CLASSIFICATIONS,
            "methods": ROOT_CAUSE_METHODS,
            "action_owners": sorted({a.owner for a in actions if a.status != "cancelled"}),
            "error": error,
            "failed": failed,
            "values": values or {},
            "done": done,
            "queue_url": queue + (f"?{_requery(back)}" if back else ""),
            "from_query": _requery(back),
            "summary": _summary,
        },
        code,
    )


def _requery(query: str) -> str:
    """A queue query string passed along in ``from=``, rebuilt from its parsed pairs only."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=False)
    return urllib.parse.urlencode(pairs)


def _shown(key: str, value: Any) -> str | None:
    """A logged value as a person reads it; None for nothing worth showing."""
    if value is None or value is False or value == [] or value == {}:
        return None
    if key == "status":  # lifecycle states read as words
        return str(value).replace("_", " ")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if value is True:
        return "yes"
    text = str(value)
    return text if len(text) <= 300 else text[:297] + "\N{HORIZONTAL ELLIPSIS}"


def _summary(entry: LogEntry) -> list[tuple[str, str]]:
    """What a log entry changed, as (field, text) pairs a person reads."""
    before = entry.before if isinstance(entry.before, dict) else {}
    after = entry.after if isinstance(entry.after, dict) else {}
    skip = {"reference", "occurrences", "open", "system_id", "objective_id", "window_end"}
    pairs = []
    for key, value in after.items():
        if key in skip or (key in before and before[key] == value):
            continue
        if key == "action_plan" and value == 1:
            continue
        now, was = _shown(key, value), _shown(key, before.get(key))
        if now is None:
            continue
        pairs.append((key.replace("_", " "), f"{was} \N{RIGHTWARDS ARROW} {now}" if was else now))
    return pairs


@router.get("/nonconformities/{ref}", response_class=HTMLResponse, name="record")
def record_page(request: Request, session: SessionDep, ref: str) -> Response:
    viewer = _signed_in(request)
    try:
        nc = _find(session, ref)
    except HTTPException as exc:
        return _not_found(request, viewer, exc)
    return _record_page(request, session, nc, viewer)


def _not_found(request: Request, viewer: Principal, exc: HTTPException) -> HTMLResponse:
    """A page that names what was not found (a 404 a person reads, not JSON)."""
    if exc.status_code != status.HTTP_404_NOT_FOUND:
        raise exc
    context = {"viewer": viewer, "message": str(exc.detail)}
    return _render(request, "not_found.html", context, status.HTTP_404_NOT_FOUND)


@dataclass(frozen=True)
class _RecordForm:
    """A form posted from a record's page: who writes, to which record."""

    request: Request
    session: Session
    viewer: Principal
    nc: Nonconformity

    def after(
        self,
        write: Callable[[], object],
        *,
        done: str,
        form: str,
        values: dict[str, Any],
        anchor: str,
    ) -> Response:
        """Run ``write`` on the API's write path; redirect back (303) on success, or show the
        page again with the guard's or the validation's message and the user's input kept."""
        request, session, nc = self.request, self.session, self.nc
        try:
            with deps.writes.of(request).transaction(session):
                write()
        except (HTTPException, AlertsError) as exc:
            code, message = _refusal(exc)
            if code not in (status.HTTP_409_CONFLICT, 422):
                raise
            session.expire_all()
            return _record_page(
                request,
                session,
                _find(session, nc.id),
                self.viewer,
                error=message,
                failed=form,
                values=values,
                code=code,
            )
        target = _path(request, "record", ref=nc.reference or nc.id)
        query = {"done": done, **({"from": values["from"]} if values.get("from") else {})}
        return RedirectResponse(
            f"{target}?{urllib.parse.urlencode(query)}#{anchor}", status.HTTP_303_SEE_OTHER
        )


def _refusal(exc: HTTPException | AlertsError) -> tuple[int, str]:
    """The status and message of a refused write, as the JSON API would answer it."""
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    return status_of(ANSWERS, exc), str(exc)


def _record_form(request: Request, session: Session, csrf: str, ref: str) -> _RecordForm:
    """The writer (403 first), then the record (404)."""
    viewer = _writer(request, csrf)
    return _RecordForm(request, session, viewer, _find(session, ref))


def _invalid(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "form"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _validated(model: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(422, _invalid(exc)) from None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _due(text: str, name: str) -> datetime | None:
    """A date field: the end of that day, UTC (an action due on a day may be done that day)."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}: a date as YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, seconds=-1)


Text = Annotated[str, Form()]


@router.post("/nonconformities/{ref}/transitions", name="record_transition")
def record_transition(
    request: Request,
    session: SessionDep,
    ref: str,
    csrf: Text = "",
    to: Text = "",
    owner: Text = "",
    reason: Text = "",
    rejection: Text = "",
    duplicate_of: Text = "",
    containment: Text = "",
    consequences: Text = "",
    root_cause_method: Text = "",
    root_cause: Text = "",
    contributing_causes: Text = "",
    review_method: Text = "",
    review_criteria: Text = "",
    review_windows: Text = "",
    reviewer: Text = "",
    review_result: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
) -> Response:
    page = _record_form(request, session, csrf, ref)
    values = {
        "to": to,
        "owner": owner,
        "reason": reason,
        "rejection": rejection,
        "duplicate_of": duplicate_of,
        "containment": containment,
        "consequences": consequences,
        "root_cause_method": root_cause_method,
        "root_cause": root_cause,
        "contributing_causes": contributing_causes,
        "review_method": review_method,
        "review_criteria": review_criteria,
        "review_windows": review_windows,
        "reviewer": reviewer,
        "review_result": review_result,
        "from": from_,
    }
    body: dict[str, Any] = {
        k: v.strip() for k, v in values.items() if v.strip() and k not in ("from",)
    }
    if contributing_causes.strip():
        body["contributing_causes"] = _lines(contributing_causes)

    def write() -> None:
        request_body = _validated(TransitionRequest, body)
        assert isinstance(request_body, TransitionRequest)
        crud.transition(
            session=session,
            nc=page.nc,
            target=State(request_body.to),
            data=request_body.model_dump(),
            actor=_actor(page.viewer),
            topic=str(deps.bus.of(request).topics.nonconformities),
        )

    return page.after(
        write,
        done="transition",
        form=f"step-{to}",
        values=values,
        anchor="lifecycle",
    )


@router.post("/nonconformities/{ref}/analysis", name="record_analysis")
def record_analysis(
    request: Request,
    session: SessionDep,
    ref: str,
    csrf: Text = "",
    root_cause_method: Text = "",
    root_cause: Text = "",
    contributing_causes: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
) -> Response:
    page = _record_form(request, session, csrf, ref)
    values = {
        "root_cause_method": root_cause_method,
        "root_cause": root_cause,
        "contributing_causes": contributing_causes,
        "from": from_,
    }

    def write() -> None:
        crud.revise_analysis(
            session=session,
            nc=page.nc,
            data={
                "root_cause_method": root_cause_method,
                "root_cause": root_cause,
                "contributing_causes": _lines(contributing_causes),
            },
            actor=_actor(page.viewer),
        )

    return page.after(
        write,
        done="analysis",
        form="analysis",
        values=values,
        anchor="analysis",
    )


@router.post("/nonconformities/{ref}/classification", name="record_classification")
def record_classification(
    request: Request,
    session: SessionDep,
    ref: str,
    csrf: Text = "",
    classification: Text = "",
    reason: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
) -> Response:
    page = _record_form(request, session, csrf, ref)
    values = {"classification": classification, "reason": reason, "from": from_}

    def write() -> None:
        change = _validated(
            ClassificationChange, {"classification": classification, "reason": reason.strip()}
        )
        assert isinstance(change, ClassificationChange)
        if not page.nc.open:
            raise TransitionError(f"the record is {page.nc.status}: its classification is final")
        crud.reclassify(
            session=session,
            nc=page.nc,
            classification=change.classification,
            reason=change.reason,
            actor=_actor(page.viewer),
            topic=str(deps.bus.of(request).topics.nonconformities),
        )

    return page.after(
        write,
        done="classification",
        form="classification",
        values=values,
        anchor="record-header",
    )


@router.post("/nonconformities/{ref}/actions", name="record_add_action")
def record_add_action(
    request: Request,
    session: SessionDep,
    ref: str,
    csrf: Text = "",
    description: Text = "",
    action_type: Annotated[str, Form(alias="type")] = "corrective",
    owner: Text = "",
    due: Text = "",
    evidence_link: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
) -> Response:
    page = _record_form(request, session, csrf, ref)
    values = {
        "description": description,
        "type": action_type,
        "owner": owner,
        "due": due,
        "evidence_link": evidence_link,
        "from": from_,
    }

    def write() -> None:
        due_at = _due(due, "due")
        body = {
            "description": description.strip(),
            "type": action_type,
            "owner": owner.strip(),
            "due_at": due_at,
            "evidence_links": [evidence_link.strip()] if evidence_link.strip() else [],
        }
        if due_at is None:
            raise HTTPException(422, "due: the date the action is due")
        action = _validated(ActionCreate, body)
        crud.add_action(
            session=session, nc=page.nc, data=action.model_dump(), actor=_actor(page.viewer)
        )

    return page.after(
        write,
        done="action",
        form="new-action",
        values=values,
        anchor="actions",
    )


@router.post("/actions/{action_id}", name="action_update")
def action_update(
    request: Request,
    session: SessionDep,
    action_id: str,
    csrf: Text = "",
    status_: Annotated[str, Form(alias="status")] = "",
    owner: Text = "",
    due: Text = "",
    evidence_link: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
) -> Response:
    viewer = _writer(request, csrf)
    action = session.get(CorrectiveAction, action_id)
    if action is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no corrective action {action_id!r}")
    page = _RecordForm(request, session, viewer, _find(session, action.nonconformity_id))
    values = {
        "status": status_,
        "owner": owner,
        "due": due,
        "evidence_link": evidence_link,
        "from": from_,
        "action_id": action_id,
    }

    def write() -> None:
        body = {
            "status": status_ or None,
            "owner": owner.strip() or None,
            "due_at": _due(due, "due"),
            "evidence_links": [evidence_link.strip()] if evidence_link.strip() else [],
        }
        update = _validated(ActionUpdate, body)
        crud.update_action(
            session=session,
            action=action,
            data=update.model_dump(),
            actor=_actor(page.viewer),
            effectiveness_windows=deps.settings.of(request).effectiveness_windows,
        )

    return page.after(
        write,
        done="action_updated",
        form=f"action-{action_id}",
        values=values,
        anchor=f"action-{action_id}",
    )


@router.get(
    "/nonconformities/{ref}/occurrences/{occurrence_id}",
    response_class=HTMLResponse,
    name="occurrence",
)
def occurrence_page(
    request: Request, session: SessionDep, ref: str, occurrence_id: int
) -> Response:
    """The evidence behind one occurrence, as the alerts service stored it: the evaluation's
    id, window, revision and value, the window's verdict now, and the log entries naming it."""
    viewer = _signed_in(request)
    try:
        nc = _find(session, ref)
    except HTTPException as exc:
        return _not_found(request, viewer, exc)
    occurrence = session.get(Occurrence, occurrence_id)
    if occurrence is None or occurrence.nonconformity_id != nc.id:
        missing = HTTPException(404, f"no occurrence {occurrence_id} of {ref}")
        return _not_found(request, viewer, missing)
    verdict = session.get(WindowVerdict, (nc.fingerprint, occurrence.window_start))
    window = _utc(occurrence.window_start).isoformat()[:19]
    entries = [
        entry
        for entry in session.exec(
            select(LogEntry).where(LogEntry.subject == nc.id).order_by(col(LogEntry.seq))
        ).all()
        if isinstance(entry.after, dict)
        and (
            entry.after.get("evaluation_id") == occurrence.evaluation_id
            or str(entry.after.get("window_start") or "")[:19] == window
        )
    ]
    return _render(
        request,
        "occurrence.html",
        {
            "viewer": viewer,
            "nc": nc,
            "occurrence": occurrence,
            "verdict": verdict,
            "entries": entries,
            "summary": _summary,
        },
    )


# --- systems --------------------------------------------------------------------------------


@dataclass
class ObjectiveStatus:
    objective_id: str
    fingerprint: str | None
    metric: str
    comparator: str
    latest: WindowVerdict | None
    chart: Any
    open_record: Nonconformity | None
    definition: Objective | None


@router.get("/systems", response_class=HTMLResponse, name="systems")
def systems_page(request: Request, session: SessionDep) -> Response:
    viewer = _signed_in(request)
    snapshots = dict(deps.registry_view.of(request).systems)
    open_counts = dict(
        session.exec(
            select(Nonconformity.system_id, func.count())
            .where(col(Nonconformity.open).is_(True))
            .group_by(col(Nonconformity.system_id))
        ).all()
    )
    ids = sorted(set(snapshots) | set(open_counts))
    return _render(
        request,
        "systems.html",
        {"viewer": viewer, "ids": ids, "snapshots": snapshots, "open_counts": open_counts},
    )


@router.get("/systems/{system_id}", response_class=HTMLResponse, name="system")
def system_page(request: Request, session: SessionDep, system_id: str) -> Response:
    """Every objective of one AI system: its latest verdict and a small chart of its windows."""
    viewer = _signed_in(request)
    snapshot = deps.registry_view.of(request).get(system_id)
    seen = session.exec(
        select(WindowVerdict.fingerprint, WindowVerdict.objective_id)
        .where(WindowVerdict.system_id == system_id)
        .distinct()
    ).all()
    open_records = {
        nc.fingerprint: nc
        for nc in session.exec(
            select(Nonconformity).where(
                Nonconformity.system_id == system_id, col(Nonconformity.open).is_(True)
            )
        ).all()
    }
    definitions = {o.id: o for o in (snapshot.objectives if snapshot else [])}
    statuses: list[ObjectiveStatus] = []
    charted: set[str] = set()
    for fingerprint, objective_id in sorted(seen, key=lambda row: str(row[1])):
        objective_id = str(objective_id)
        charted.add(objective_id)
        definition = definitions.get(objective_id)
        points, rows = _series(session, fingerprint, SYSTEM_CHART_WINDOWS)
        record = open_records.get(fingerprint)
        metric = definition.metric if definition else (record.metric if record else "value")
        comparator = (
            definition.comparator.value if definition else (record.comparator if record else "")
        )
        statuses.append(
            ObjectiveStatus(
                objective_id=objective_id,
                fingerprint=fingerprint,
                metric=metric,
                comparator=comparator,
                latest=rows[-1] if rows else None,
                chart=evidence_chart(
                    points,
                    chart_id=f"chart-{fingerprint[:12]}",
                    title=f"{metric} per window of {system_id} / {objective_id}",
                    metric=metric,
                    comparator=comparator,
                    threshold=definition.threshold if definition else None,
                    occurrences=[],
                    width=360,
                    height=110,
                    compact=True,
                ),
                open_record=record,
                definition=definition,
            )
        )
    for objective_id, definition in sorted(definitions.items()):
        if objective_id not in charted:
            statuses.append(
                ObjectiveStatus(
                    objective_id=objective_id,
                    fingerprint=None,
                    metric=definition.metric,
                    comparator=definition.comparator.value,
                    latest=None,
                    chart=None,
                    open_record=None,
                    definition=definition,
                )
            )
    if snapshot is None and not statuses:
        return _not_found(request, viewer, HTTPException(404, f"no AI system {system_id!r}"))
    return _render(
        request,
        "system.html",
        {
            "viewer": viewer,
            "system_id": system_id,
            "snapshot": snapshot,
            "statuses": statuses,
            "open_count": len(open_records),
        },
    )


# --- the evidence pack ----------------------------------------------------------------------


@router.get("/evidence", response_class=HTMLResponse, name="evidence")
def evidence_page(request: Request, session: SessionDep) -> Response:
    """Choose the period and system of the auditors' evidence pack (the zip itself is
    ``GET /v1/evidence``, reports_api.py)."""
    viewer = _signed_in(request)
    systems = sorted(
        set(session.exec(select(Nonconformity.system_id).distinct()).all())
        | set(_registry_systems(request))
    )
    today = datetime.now(UTC).date()
    return _render(
        request,
        "evidence.html",
        {
            "viewer": viewer,
            "systems": systems,
            "can_export": not viewer.authenticated or viewer.role in EXPORTERS,
            "default_from": (today - timedelta(days=90)).isoformat(),
            "default_to": today.isoformat(),
        },
    )
