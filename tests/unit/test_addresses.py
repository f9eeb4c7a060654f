"""Email normalisation and typo suggestions (SPEC L4), phone numbers in E.164."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dripflow.core.addresses import InvalidAddress, check_email, normalize_email, normalize_phone


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ann@gmali.com", "ann@gmail.com"),
        ("ann@hootmail.com", "ann@hotmail.com"),
        ("ann@aol.con", "ann@aol.com"),
        ("ann@college.edi", "ann@college.edu"),
        ("Ann@YAHOOO.com", "ann@yahoo.com"),
    ],
)
def test_L4_likely_domain_typos_are_flagged_with_a_suggestion(typed: str, meant: str) -> None:
    """SPEC L4: the four typos the spec names (and a common one) get the intended address."""
    assert check_email(typed).suggestion == meant


@pytest.mark.parametrize("email", ["ann@gmail.com", "ann@acme.test", "bob@mycompany.com", "c@hotmail.co.uk"])
def test_L4_correct_addresses_get_no_suggestion(email: str) -> None:
    """SPEC L4: a correct or private-domain address is never 'corrected'."""
    assert check_email(email).suggestion is None


def test_email_is_trimmed_and_lower_cased_so_case_variants_are_one_contact() -> None:
    assert normalize_email("  Ann.Lee@Example.COM ") == "ann.lee@example.com"


@pytest.mark.parametrize("bad", ["", "ann", "ann@", "ann@@x.com", "ann@localhost", "a b@x.com"])
def test_invalid_emails_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidAddress, match="email"):
        normalize_email(bad)


@given(st.emails())
def test_normalising_twice_changes_nothing(email: str) -> None:
    try:
        once = normalize_email(email)
    except InvalidAddress:
        return
    assert normalize_email(once) == once


def test_phone_numbers_become_e164() -> None:
    assert normalize_phone("+1 (555) 010-0123") == "+15550100123"
    assert normalize_phone("555 010 0123", "US") == "+15550100123"
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize("bad", ["12", "not a phone", "5550100123"])
def test_unusable_phone_numbers_are_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress, match="phone"):
        normalize_phone(bad)
