"""Alerts HTTP routes: nonconformities for quality managers, as JSON and as a page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from sqlmodel import col, select

from shared.auth import Principal, require_roles
from shared.db import SessionDep

from .models import Nonconformity

__all__ = ["router"]

router = APIRouter(tags=["alerts"])

Reader = Annotated[Principal, Depends(require_roles())]
"""Every role may read nonconformities (auditors and SREs included)."""


@router.get("/v1/nonconformities", response_model=list[Nonconformity])
def list_nonconformities(
    session: SessionDep,
    _user: Reader,
    system_id: str | None = None,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Nonconformity]:
    stmt = select(Nonconformity)
    if system_id is not None:
        stmt = stmt.where(Nonconformity.system_id == system_id)
    if open_only:
        stmt = stmt.where(Nonconformity.open == True)  # noqa: E712
    stmt = stmt.order_by(col(Nonconformity.raised_at).desc()).limit(limit)
    return list(session.exec(stmt).all())


@router.get("/v1/nonconformities/{nc_id}", response_model=Nonconformity)
def get_nonconformity(nc_id: str, session: SessionDep, _user: Reader) -> Nonconformity:
    nc = session.get(Nonconformity, nc_id)
    if nc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no nonconformity {nc_id!r}")
    return nc


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def nonconformity_page(request: Request, session: SessionDep, _user: Reader) -> HTMLResponse:
    rows = session.exec(
        select(Nonconformity).order_by(col(Nonconformity.raised_at).desc()).limit(200)
    ).all()
    templates = request.app.state.templates
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request, "nonconformities.html", {"nonconformities": rows}
    )
