"""shared.errors: a service's table answers each error by its most specific listed class, and
shared.deps.FromState serves app.state as a dependency."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from shared.deps import FromState
from shared.errors import Answer, ServiceError, install_answers, respond, status_of


class Refused(ServiceError):
    pass


class Conflict(Refused):
    pass


class Limited(ServiceError):
    def __init__(self, wait: int) -> None:
        super().__init__(f"retry after {wait}s")
        self.wait = wait


GreetingDep = Annotated[str, Depends(FromState[str]("greeting"))]

ANSWERS = {
    Refused: Answer(422),
    Conflict: Answer(409),
    Limited: Answer(429, headers=lambda exc: {"Retry-After": str(exc.wait)}),
}


def test_the_most_specific_listed_class_decides() -> None:
    assert status_of(ANSWERS, Refused("no")) == 422
    assert status_of(ANSWERS, Conflict("taken")) == 409
    response = respond(ANSWERS, Limited(3))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert response.body == b'{"detail":"retry after 3s"}'


def test_an_error_the_table_does_not_list_is_not_answered() -> None:
    with pytest.raises(LookupError, match="no answer for ServiceError"):
        respond(ANSWERS, ServiceError("?"))


async def test_an_app_answers_its_table_and_reads_its_state_through_dependencies() -> None:
    app = FastAPI()
    app.state.greeting = "hello"
    install_answers(app, ANSWERS)

    @app.get("/greet")
    async def greet(text: GreetingDep) -> str:
        return text

    @app.get("/taken")
    async def taken() -> None:
        raise Conflict("the name is taken")

    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/greet")).json() == "hello"
        answer = await client.get("/taken")
        assert (answer.status_code, answer.json()) == (409, {"detail": "the name is taken"})
    assert "parameters" not in app.openapi()["paths"]["/greet"]["get"]
