"""The SDK's copy of the event contract's rules (it ships without ``shared/``) is the contract's:
the same constants, and on generated ids and model versions the same answers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from shared import contracts
from watchkeeper_sdk import InvalidEventError
from watchkeeper_sdk import _events as sdk

IDENTIFIERS: TypeAdapter[str] = TypeAdapter(contracts.Identifier)
MODEL_VERSIONS: TypeAdapter[str] = TypeAdapter(contracts.ModelVersionName)

CANDIDATES = st.one_of(
    st.from_regex(r"[A-Za-z0-9._:\-]{0,140}", fullmatch=True),
    st.text(max_size=12),
    st.sampled_from(["", "-a", "a b", "a\n", "é", "x" * 128, "x" * 129, "a:b.c_d-e"]),
)


def _contract_accepts(adapter: TypeAdapter[str], value: Any) -> bool:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def _sdk_accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except InvalidEventError:
        return False
    return True


def test_the_sdk_copies_the_contracts_constants() -> None:
    assert sdk.IDENTIFIER_PATTERN == contracts.IDENTIFIER_PATTERN
    assert sdk.IDENTIFIER_MAX_LENGTH == contracts.IDENTIFIER_MAX_LENGTH
    assert sdk.MODEL_VERSION_MAX_LENGTH == contracts.MODEL_VERSION_MAX_LENGTH


@given(CANDIDATES)
def test_the_sdk_accepts_exactly_the_ids_the_contract_accepts(value: str) -> None:
    check = lambda v: sdk.check_identifier(v, "event_id")  # noqa: E731
    assert _sdk_accepts(check, value) == _contract_accepts(IDENTIFIERS, value)


@given(CANDIDATES)
def test_the_sdk_accepts_exactly_the_model_versions_the_contract_accepts(value: str) -> None:
    assert _sdk_accepts(sdk.check_model_version, value) == _contract_accepts(MODEL_VERSIONS, value)


@pytest.mark.parametrize("value", [None, 1, b"abc"])
def test_non_strings_are_refused_by_both(value: object) -> None:
    assert not _sdk_accepts(sdk.check_model_version, value)
    assert not _contract_accepts(MODEL_VERSIONS, value)
    assert not _sdk_accepts(lambda v: sdk.check_identifier(v, "event_id"), value)
    assert not _contract_accepts(IDENTIFIERS, value)
