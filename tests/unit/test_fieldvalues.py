"""Custom field values are typed as the workspace declares them (SPEC §2 `fields`)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dripflow.core.fieldvalues import coerce_field


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        ("text", "Pro plan", "Pro plan"),
        ("number", "42", 42),
        ("number", "1,250.50", 1250.5),
        ("date", "1990-02-28", "1990-02-28"),
        ("boolean", "Yes", True),
        ("boolean", "0", False),
        ("number", "  ", None),
    ],
)
def test_values_take_the_declared_type(kind: str, raw: str, value: object) -> None:
    assert coerce_field(kind, raw) == value  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [("number", "ten", "not a number"), ("date", "28/02/1990", "YYYY-MM-DD"), ("boolean", "maybe", "yes/no")],
)
def test_wrong_values_are_refused_with_a_reason(kind: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coerce_field(kind, raw)  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_round_trip(number: int) -> None:
    assert coerce_field("number", str(number)) == number
