"""The rules ``shared.contracts`` declares for the fast paths hold against the contract itself:
an id matches ``IDENTIFIER_PATTERN`` exactly when ``Identifier`` accepts it, and every timestamp
``TIMESTAMP_PATTERN`` matches (on a real date) is read as the same instant by pydantic,
``datetime.fromisoformat`` and Arrow."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from shared.contracts import IDENTIFIER_PATTERN, TIMESTAMP_PATTERN, Identifier

IDENTIFIERS: TypeAdapter[str] = TypeAdapter(Identifier)
TIMES: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _contract_accepts(value: str) -> bool:
    try:
        IDENTIFIERS.validate_python(value)
    except ValidationError:
        return False
    return True


@given(
    st.one_of(
        st.from_regex(r"[A-Za-z0-9._:\-]{0,140}", fullmatch=True),
        st.text(max_size=10),
        st.sampled_from(["a\n", "x" * 128, "x" * 129, "-a", ".a", "a b"]),
    )
)
def test_the_identifier_pattern_is_the_contracts_identifier(value: str) -> None:
    assert (re.fullmatch(IDENTIFIER_PATTERN, value) is not None) == _contract_accepts(value)


@settings(deadline=None)
@given(
    st.one_of(
        st.from_regex(TIMESTAMP_PATTERN, fullmatch=True),
        st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01 23:59:59.5-23:59"]),
    )
)
def test_a_timestamp_of_the_pattern_reads_alike_everywhere(text: str) -> None:
    try:
        date.fromisoformat(text[:10])
    except ValueError:
        assume(False)  # the pattern leaves the day of the month (and year 0) to check
    moment = datetime.fromisoformat(text)
    assert TIMES.validate_python(text) == moment
    micros = pc.cast(pa.array([text]), pa.timestamp("us", tz="UTC")).cast(pa.int64())[0]
    assert micros.as_py() == (moment - EPOCH) // timedelta(microseconds=1)


def test_offsets_past_the_pattern_are_refused_by_the_contract() -> None:
    """Why the offset's minutes are bounded: ``fromisoformat`` would read +00:60 as +01:00."""
    for text in ("2026-01-01T00:00:00+00:60", "2026-01-01T00:00:00+24:00"):
        assert re.fullmatch(TIMESTAMP_PATTERN, text) is None
        try:
            TIMES.validate_python(text)
        except ValidationError:
            continue
        raise AssertionError(f"the contract accepts {text}")
