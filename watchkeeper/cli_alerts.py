"""Alerts commands: nonconformities (list, show, transition, log), silences, evaluations.

They talk to a running alerts service over HTTP (``--url`` / ``WK_ALERTS_URL``, default the
embedded platform's ``http://127.0.0.1:8000/alerts``; ``evaluations`` uses ``WK_EVALUATOR_URL``)
with a user token (``--token`` / ``WK_TOKEN``) when the service requires one. ``--json`` prints
the API's JSON instead of a table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

DEFAULT_URL = "http://127.0.0.1:8000/alerts"
DEFAULT_EVALUATOR_URL = "http://127.0.0.1:8000/evaluator"

err = Console(stderr=True)
out = Console(width=200)

nonconformities = typer.Typer(
    help="Nonconformities (ISO/IEC 42001 10.2) and the improvement log.", no_args_is_help=True
)
silences = typer.Typer(help="Silences: hold back raises for a while.", no_args_is_help=True)
evaluations = typer.Typer(help="Evaluations published by the evaluator.", no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", envvar="WK_ALERTS_URL", help="Alerts base URL")]
EvaluatorUrl = Annotated[
    str, typer.Option("--url", envvar="WK_EVALUATOR_URL", help="Evaluator base URL")
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="WK_TOKEN", help="User token (when auth is on)")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
Limit = Annotated[int, typer.Option(min=1, max=1000)]


def _request(url: str, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        err.print(f"[red]{method} {url.rstrip('/')}{path}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        _fail(response)
    return response.json()


def _fail(response: httpx.Response) -> NoReturn:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    err.print(f"[red]{response.request.method} {response.request.url.path}: {response.status_code}")
    for item in detail if isinstance(detail, list) else [detail]:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in item.get("loc", []) if p not in ("body", "query"))
            err.print(f"  {where}: {item.get('msg', item)}")
        else:
            err.print(f"  {item}")
    raise typer.Exit(1)


def _print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    out.print(table)


def _params(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v is not False}


# --- nonconformities ------------------------------------------------------------------------


@nonconformities.command("list")
def list_nonconformities(
    url: Url = DEFAULT_URL,
    token: Token = None,
    system: Annotated[str | None, typer.Option(help="AI system id")] = None,
    state: Annotated[str | None, typer.Option(help="raised, triaged, …, closed")] = None,
    classification: Annotated[str | None, typer.Option(help="major, minor, observation")] = None,
    owner: str | None = None,
    overdue: Annotated[bool, typer.Option(help="Open and past the due date")] = False,
    open_only: Annotated[bool, typer.Option("--open", help="Open records only")] = False,
    min_age_days: Annotated[float | None, typer.Option(help="Raised at least N days ago")] = None,
    limit: Limit = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: AsJson = False,
) -> None:
    """List nonconformities, newest first."""
    rows = _request(
        url,
        token,
        "GET",
        "/v1/nonconformities",
        params=_params(
            system_id=system,
            state=state,
            classification=classification,
            owner=owner,
            overdue=overdue,
            open_only=open_only,
            min_age_days=min_age_days,
            limit=limit,
            offset=offset,
        ),
    )
    if as_json:
        _print_json(rows)
        return
    _table(
        "Nonconformities",
        ["reference", "system", "objective", "class", "state", "occ.", "owner", "due", "raised"],
        [
            [
                r["reference"],
                r["system_id"],
                r["objective_id"],
                r["classification"],
                r["status"],
                r["occurrences"],
                r["owner"],
                (r["due_at"] or "")[:10],
                r["raised_at"][:19],
            ]
            for r in rows
        ],
    )


@nonconformities.command("show")
def show(
    nc_id: Annotated[str, typer.Argument(help="Id or reference (NC-2026-0001)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One record with its actions and the evaluations behind every occurrence."""
    nc = _request(url, token, "GET", f"/v1/nonconformities/{nc_id}")
    if as_json:
        _print_json(nc)
        return
    skip = {"actions", "occurrence_evidence"}
    _table(
        nc["reference"] or nc["id"],
        ["field", "value"],
        [[k, v] for k, v in nc.items() if k not in skip],
    )
    _table(
        "Corrective actions",
        ["id", "type", "owner", "due", "status", "description"],
        [
            [a["id"][:8], a["type"], a["owner"], a["due_at"][:10], a["status"], a["description"]]
            for a in nc["actions"]
        ],
    )
    _table(
        "Occurrences",
        ["window start", "window end", "evaluation", "objective v.", "rev.", "value", "withdrawn"],
        [
            [
                o["window_start"],
                o["window_end"],
                o["evaluation_id"],
                o["objective_version"],
                o["revision"],
                o["value"],
                o["withdrawn"],
            ]
            for o in nc["occurrence_evidence"]
        ],
    )


@nonconformities.command("transition")
def transition(
    nc_id: Annotated[str, typer.Argument(help="Id or reference")],
    to: Annotated[str, typer.Argument(help="Target state, e.g. triaged, contained, closed")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    reason: str | None = None,
    owner: str | None = None,
    rejection: Annotated[str | None, typer.Option(help="false_positive or duplicate")] = None,
    duplicate_of: str | None = None,
    containment: str | None = None,
    consequences: str | None = None,
    root_cause_method: Annotated[
        str | None, typer.Option(help="five_whys, fishbone or other")
    ] = None,
    root_cause: str | None = None,
    contributing_cause: Annotated[list[str] | None, typer.Option(help="Repeat for several")] = None,
    reviewer: str | None = None,
    review_method: str | None = None,
    review_criteria: str | None = None,
    review_windows: int | None = None,
    review_result: Annotated[
        str | None, typer.Option(help="confirmed, not_effective or inconclusive")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Move a record one lifecycle step, with the fields that step records."""
    body = _params(
        to=to,
        reason=reason,
        owner=owner,
        rejection=rejection,
        duplicate_of=duplicate_of,
        containment=containment,
        consequences=consequences,
        root_cause_method=root_cause_method,
        root_cause=root_cause,
        contributing_causes=contributing_cause or None,
        reviewer=reviewer,
        review_method=review_method,
        review_criteria=review_criteria,
        review_windows=review_windows,
        review_result=review_result,
    )
    nc = _request(url, token, "POST", f"/v1/nonconformities/{nc_id}/transitions", json=body)
    if as_json:
        _print_json(nc)
    else:
        typer.echo(f"{nc['reference']}: {nc['status']}")


@nonconformities.command("log")
def improvement_log(
    url: Url = DEFAULT_URL,
    token: Token = None,
    subject: Annotated[str | None, typer.Option(help="A record id, silence:<id>, …")] = None,
    kind: str | None = None,
    actor: str | None = None,
    after_seq: Annotated[int, typer.Option(min=0)] = 0,
    limit: Limit = 100,
    verify: Annotated[bool, typer.Option(help="Verify the hash chain instead")] = False,
    as_json: AsJson = False,
) -> None:
    """The continual improvement log (clause 10.1), oldest first, or its verification."""
    if verify:
        found = _request(url, token, "GET", "/v1/log/verify")
        if as_json:
            _print_json(found)
        elif found["ok"]:
            typer.echo(f"ok: {found['entries']} entries, the chain is intact")
        else:
            typer.echo(f"BROKEN at entry {found['first_broken_seq']}: {found['reason']}")
        if not found["ok"]:
            raise typer.Exit(2)
        return
    entries = _request(
        url,
        token,
        "GET",
        "/v1/log",
        params=_params(subject=subject, kind=kind, actor=actor, after_seq=after_seq, limit=limit),
    )
    if as_json:
        _print_json(entries)
        return
    _table(
        "Continual improvement log",
        ["seq", "at", "actor", "kind", "subject", "after"],
        [
            [
                e["seq"],
                e["at"][:19],
                e["actor"],
                e["kind"],
                e["subject"],
                orjson.dumps(e["after"]).decode()[:80],
            ]
            for e in entries
        ],
    )


# --- silences -------------------------------------------------------------------------------


@silences.command("list")
def list_silences(
    url: Url = DEFAULT_URL,
    token: Token = None,
    active: Annotated[bool, typer.Option(help="Only silences not expired")] = False,
    as_json: AsJson = False,
) -> None:
    rows = _request(url, token, "GET", "/v1/silences", params=_params(active_only=active))
    if as_json:
        _print_json(rows)
        return
    _table(
        "Silences",
        ["id", "matchers", "author", "reason", "starts", "expires"],
        [
            [
                s["id"],
                s["matchers"],
                s["author"],
                s["reason"],
                s["starts_at"][:19],
                s["expires_at"][:19],
            ]
            for s in rows
        ],
    )


@silences.command("create")
def create_silence(
    match: Annotated[
        list[str], typer.Option(help="name=value (system_id, objective_id, metric, severity)")
    ],
    reason: Annotated[str, typer.Option(help="Why (kept in the log)")],
    hours: Annotated[float, typer.Option(help="Expires after this many hours", min=0.001)],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    matchers: dict[str, str] = {}
    for item in match:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            err.print(f"[red]--match {item!r}: expected name=value")
            raise typer.Exit(2)
        matchers[name] = value
    expires = datetime.now(UTC) + timedelta(hours=hours)
    silence = _request(
        url,
        token,
        "POST",
        "/v1/silences",
        json={"matchers": matchers, "reason": reason, "expires_at": expires.isoformat()},
    )
    if as_json:
        _print_json(silence)
    else:
        typer.echo(f"silence {silence['id']} until {silence['expires_at']}")


@silences.command("expire")
def expire_silence(
    silence_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    silence = _request(url, token, "POST", f"/v1/silences/{silence_id}/expire")
    if as_json:
        _print_json(silence)
    else:
        typer.echo(f"silence {silence['id']} expired")


# --- evaluations ----------------------------------------------------------------------------


@evaluations.command("list")
def list_evaluations(
    url: EvaluatorUrl = DEFAULT_EVALUATOR_URL,
    token: Token = None,
    system: str | None = None,
    objective: str | None = None,
    limit: Limit = 100,
    as_json: AsJson = False,
) -> None:
    """The newest evaluations (one per objective and window and revision)."""
    rows = _request(
        url,
        token,
        "GET",
        "/v1/evaluations",
        params=_params(system_id=system, objective_id=objective, limit=limit),
    )
    if as_json:
        _print_json(rows)
        return
    _table(
        "Evaluations",
        ["window end", "system", "objective", "metric", "value", "threshold", "status", "rev."],
        [
            [
                r["window_end"][:19],
                r["system_id"],
                r["objective_id"],
                r["metric"],
                r["value"],
                f"{r['comparator']} {r['threshold']}",
                r["status"],
                r["revision"],
            ]
            for r in rows
        ],
    )


def register(app: typer.Typer) -> None:
    """Add the alerts commands to the ``watchkeeper`` CLI."""
    app.add_typer(nonconformities, name="nonconformities")
    app.add_typer(silences, name="silences")
    app.add_typer(evaluations, name="evaluations")
