"""HTTP request models of the alerts API (responses are the tables' own models)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts import Identifier

__all__ = [
    "ActionCreate",
    "ActionUpdate",
    "ClassificationChange",
    "NonconformityCreate",
    "SilenceCreate",
    "TransitionRequest",
]

Classification = Literal["major", "minor", "observation"]
Text = Annotated[str, Field(min_length=1, max_length=10_000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NonconformityCreate(_Request):
    """A record raised by hand; monitoring records are raised by the service itself."""

    source: Literal["audit", "incident", "complaint"]
    system_id: Identifier
    objective_id: Identifier | None = None
    title: Text
    description: str = ""
    classification: Classification
    owner: str | None = None
    due_at: AwareDatetime | None = None


class TransitionRequest(_Request):
    """One lifecycle step and the fields that step records."""

    to: Literal[
        "triaged",
        "rejected",
        "contained",
        "cause_analysed",
        "action_planned",
        "action_implemented",
        "effectiveness_review",
        "closed",
    ]
    reason: str | None = None
    rejection: Literal["false_positive", "duplicate"] | None = None
    duplicate_of: str | None = None
    owner: str | None = None
    containment: str | None = None
    consequences: str | None = None
    root_cause_method: Literal["five_whys", "fishbone", "other"] | None = None
    root_cause: str | None = None
    contributing_causes: list[str] | None = None
    review_method: str | None = None
    review_criteria: str | None = None
    review_windows: Annotated[int, Field(ge=1, le=1000)] | None = None
    reviewer: str | None = None
    review_result: Literal["confirmed", "not_effective", "inconclusive"] | None = None


class ClassificationChange(_Request):
    classification: Classification
    reason: Text


class ActionCreate(_Request):
    description: Text
    type: Literal["corrective", "preventive"] = "corrective"
    owner: Annotated[str, Field(min_length=1, max_length=255)]
    due_at: AwareDatetime
    evidence_links: list[str] = Field(default_factory=list)


class ActionUpdate(_Request):
    status: Literal["planned", "in_progress", "implemented", "cancelled"] | None = None
    description: str | None = None
    owner: str | None = None
    due_at: AwareDatetime | None = None
    evidence_links: list[str] = Field(default_factory=list)


class SilenceCreate(_Request):
    matchers: dict[str, str]
    reason: Text
    starts_at: AwareDatetime | None = None
    expires_at: AwareDatetime
