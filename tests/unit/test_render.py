"""Template rendering in the sandbox (SPEC §2 Templates, S11, D1, D6)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from dripflow.core import render
from dripflow.core.contact_view import ContactView
from dripflow.core.model import EmailTemplate, PostcardTemplate, SmsTemplate
from dripflow.core.render import (
    MissingVariable,
    RenderContext,
    RenderedEmail,
    RenderedText,
    RenderFailure,
    links_used,
    render_email,
    render_postcard,
    render_sms,
    variables_used,
)

LINKS = {"offer": "https://mail.acme.test/c/tok-offer", "webinar": "https://mail.acme.test/c/tok-web?a=1&b=2"}
UNSUBSCRIBE = "https://mail.acme.test/u/tok?s=onboarding&all=0"


def tracked(name: str) -> str:
    return LINKS[name]


def contact(**overrides: Any) -> ContactView:
    values: dict[str, Any] = {
        "id": 7,
        "email": "ann@example.test",
        "first_name": "Ann",
        "last_name": "Lee",
        "phone": "+15550100",
        "timezone": "America/New_York",
        "source": "optin",
        "owner": "bob",
        "score": 42,
        "fields": {"plan": "pro", "birthday": date(1990, 5, 17)},
    }
    values.update(overrides)
    return ContactView(**values)


def ctx(who: ContactView | None = None, link_url: Callable[[str], str] = tracked) -> RenderContext:
    return RenderContext(
        contact=who or contact(),
        workspace_name="Acme Coaching",
        physical_address="1 Main St, Springfield, IL",
        unsubscribe_url=UNSUBSCRIBE,
        link_url=link_url,
    )


def email(subject: str = "Hello", text: str = "Body", html: str | None = None) -> EmailTemplate:
    return EmailTemplate(subject=subject, text=text, html=html)


def text_of(source: str, who: ContactView | None = None) -> str:
    return render_email(email(text=source), ctx(who)).text


def missing_path(source: str, who: ContactView | None = None) -> str:
    with pytest.raises(MissingVariable) as caught:
        text_of(source, who)
    return caught.value.path


# --------------------------------------------------------------------------------------------------
# Variables (SPEC §2)


def test_renders_every_variable() -> None:  # SPEC §2: the full variable list
    source = (
        "{{ contact.email }}|{{ contact.first_name }}|{{ contact.last_name }}|{{ contact.phone }}|"
        "{{ contact.timezone }}|{{ contact.source }}|{{ contact.owner }}|{{ contact.score }}|"
        "{{ contact.fields.plan }}|{{ contact.fields.birthday }}|{{ workspace.name }}|"
        "{{ workspace.physical_address }}|{{ unsubscribe_url }}|{{ link('offer') }}"
    )
    assert text_of(source).split("|") == [
        "ann@example.test",
        "Ann",
        "Lee",
        "+15550100",
        "America/New_York",
        "optin",
        "bob",
        "42",
        "pro",
        "1990-05-17",
        "Acme Coaching",
        "1 Main St, Springfield, IL",
        UNSUBSCRIBE,
        LINKS["offer"],
    ]


def test_the_spec_example_template_renders() -> None:  # SPEC §2 `welcome`
    template = email(
        subject="Welcome, {{ contact.first_name | default('friend') }}",
        text="Hi {{ contact.first_name }}, ... {{ link('offer') }} ...",
        html="<p>Hi {{ contact.first_name }}</p>",
    )
    assert render_email(template, ctx()) == RenderedEmail(
        subject="Welcome, Ann", text=f"Hi Ann, ... {LINKS['offer']} ...", html="<p>Hi Ann</p>"
    )


def test_score_zero_and_false_field_are_values_not_missing() -> None:  # only None counts as missing
    who = contact(score=0, fields={"vip": False, "seats": 0, "note": ""})
    assert text_of(
        "{{ contact.score }} {{ contact.fields.vip }} {{ contact.fields.seats }}[{{ contact.fields.note }}]",
        who,
    ) == ("0 False 0[]")


def test_custom_fields_named_like_mapping_methods_are_fields() -> None:
    who = contact(fields={"items": "three", "get": "yes", "keys": "k"})
    assert text_of(
        "{{ contact.fields.items }} {{ contact.fields.get }} {{ contact.fields['keys'] }}", who
    ) == ("three yes k")


def test_jinja_control_flow_and_filters_work() -> None:
    source = (
        "{% if contact.fields.plan == 'pro' %}PRO{% endif %} {{ contact.first_name | upper }} "
        "{% for i in range(3) %}{{ loop.index }}{% endfor %} {{ contact.first_name.lower() }}"
    )
    assert text_of(source) == "PRO ANN 123 ann"


def test_text_keeps_trailing_newline_as_written() -> None:
    assert text_of("Hi {{ contact.first_name }}\n\n-- \nAcme\n") == "Hi Ann\n\n-- \nAcme\n"


# --------------------------------------------------------------------------------------------------
# Missing variables (SPEC S11: blocked, reason template_variable:NAME)


def test_missing_custom_field_blocks_with_the_dotted_path() -> None:  # SPEC S11, §2
    with pytest.raises(MissingVariable) as caught:
        text_of("Hi {{ contact.fields.company }}")
    assert caught.value.path == "contact.fields.company"
    assert caught.value.reason == "template_variable:contact.fields.company"
    assert caught.value.part == "text"


def test_none_first_name_counts_as_missing() -> None:  # SPEC S11
    assert missing_path("Hi {{ contact.first_name }}", contact(first_name=None)) == "contact.first_name"


def test_none_custom_field_value_counts_as_missing() -> None:  # SPEC S11
    assert missing_path("{{ contact.fields.plan }}", contact(fields={"plan": None})) == "contact.fields.plan"


@pytest.mark.parametrize(
    "source",
    [
        "{{ contact.fields.company }}",
        "{{ contact.fields['company'] }}",
        "{{ contact.fields.company | upper }}",
        "{{ contact.fields.company ~ '!' }}",
        "{{ contact.fields.company + 1 }}",
        "{{ contact.fields.company == 'x' }}",
        "{{ contact.fields.company | length }}",
        "{{ contact.fields.company.upper() }}",
        "{{ contact.fields.company.name }}",
        "{% for c in contact.fields.company %}{{ c }}{% endfor %}",
        "{{ link(contact.fields.company) }}",
    ],
)
def test_using_a_missing_value_names_its_path(source: str) -> None:  # SPEC S11, §2 "as written"
    assert missing_path(source) == "contact.fields.company"


def test_missing_variable_in_html_is_missing_too() -> None:  # SPEC S11: escaping must not hide it
    with pytest.raises(MissingVariable) as caught:
        render_email(email(html="<p>{{ contact.fields.company }}</p>"), ctx())
    assert (caught.value.path, caught.value.part) == ("contact.fields.company", "html")


def test_missing_variable_in_subject_is_reported_for_the_subject() -> None:
    with pytest.raises(MissingVariable) as caught:
        render_email(email(subject="For {{ contact.last_name }}"), ctx(contact(last_name=None)))
    assert (caught.value.path, caught.value.part) == ("contact.last_name", "subject")


def test_missing_variable_message_names_the_line() -> None:  # a message a marketer can act on
    with pytest.raises(MissingVariable) as caught:
        text_of("Hello,\nyour company {{ contact.fields.company }} is great\n")
    assert caught.value.line == 2
    message = str(caught.value)
    assert "line 2" in message
    assert "your company {{ contact.fields.company }} is great" in message
    assert "default(" in message


@pytest.mark.parametrize(
    ("source", "path"),
    [("{{ foo }}", "foo"), ("{{ foo.bar }}", "foo"), ("{{ contact.nickname }}", "contact.nickname")],
)
def test_unknown_names_are_missing_variables(source: str, path: str) -> None:  # SPEC §2
    with pytest.raises(MissingVariable) as caught:
        text_of(source)
    assert caught.value.path == path
    assert "not a template variable" in str(caught.value)


def test_default_filter_supplies_a_value() -> None:  # SPEC §2 example, S11 "without a default"
    who = contact(first_name=None, fields={})
    assert text_of("{{ contact.first_name | default('friend') }}", who) == "friend"
    assert text_of("{{ contact.first_name | d('friend') }}", who) == "friend"
    assert text_of("{{ contact.fields.company | default('your company') }}", who) == "your company"
    assert text_of("{{ contact.fields.company.name | default('-') }}", who) == "-"
    assert text_of("{{ contact.first_name or 'friend' }}", who) == "friend"
    assert text_of("{{ contact.first_name | default('friend') }}") == "Ann"


def test_if_on_a_missing_value_is_false_not_an_error() -> None:  # SPEC S11
    who = contact(fields={})
    assert text_of("{% if contact.fields.plan %}paid{% else %}free{% endif %}", who) == "free"
    assert text_of("{% if not contact.fields.plan %}free{% endif %}", who) == "free"
    assert text_of("{% if contact.fields.plan is defined %}x{% else %}undef{% endif %}", who) == "undef"
    assert text_of("{% if 'plan' in contact.fields %}x{% else %}absent{% endif %}", who) == "absent"
    assert text_of("{% if contact.fields.plan and contact.fields.plan == 'pro' %}x{% endif %}.", who) == "."


# --------------------------------------------------------------------------------------------------
# The sandbox (SPEC S11)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ contact.email.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ link.__globals__ }}",
        "{{ link.__code__ }}",
        "{{ contact._values }}",
        "{{ contact.fields._values }}",
        "{{ range.__call__ }}",
        "{% set l = [1] %}{{ l.append(2) }}",
        "{{ ({}).update(a=1) }}",
        "{{ 'x' * 1000000 }}",
        "{{ [1] * 1000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ range(10 ** 6) | list }}",
        "{% include 'other' %}",
        "{% extends 'base' %}",
        "{% import 'macros' as m %}",
    ],
)
def test_sandbox_violations_are_render_failures(source: str) -> None:  # SPEC S11
    with pytest.raises(RenderFailure) as caught:
        text_of(source)
    assert caught.value.reason == "render_error"
    assert caught.value.message


def test_templates_cannot_change_the_contact() -> None:  # pure: the caller's data is left alone
    fields = {"tags": ["a"], "plan": "pro"}
    with pytest.raises(RenderFailure):
        text_of("{{ contact.fields.tags.append('b') }}", contact(fields=fields))
    assert fields == {"tags": ["a"], "plan": "pro"}


@pytest.mark.parametrize("source", ["{{ contact }}", "{{ contact.fields }}", "{{ workspace }}"])
def test_printing_a_group_is_a_render_failure(source: str) -> None:
    with pytest.raises(RenderFailure, match="cannot be printed"):
        text_of(source)


def test_looping_over_a_group_is_a_render_failure() -> None:
    with pytest.raises(RenderFailure, match="cannot be looped over"):
        text_of("{% for k in contact.fields %}{{ k }}{% endfor %}")


def test_other_undefined_values_are_render_failures_not_missing_variables() -> None:
    # Not a contact variable: an attribute a string lacks, an unpassed macro argument.
    with pytest.raises(RenderFailure, match="no attribute 'nope'"):
        text_of("{{ contact.first_name.nope }}")
    with pytest.raises(RenderFailure, match="parameter 'a' was not provided"):
        text_of("{% macro m(a) %}{{ a }}{% endmacro %}{{ m() }}")


# --------------------------------------------------------------------------------------------------
# Escaping and the subject (D1, D6: no header injection)


def test_html_is_escaped_but_text_and_subject_are_literal() -> None:
    who = contact(first_name="<script>alert(1)</script>", fields={"company": "Ben & Jerry's"})
    template = email(
        subject="Hi {{ contact.first_name }}",
        text="Hi {{ contact.first_name }} of {{ contact.fields.company }}",
        html="<p>Hi {{ contact.first_name }} of {{ contact.fields.company }}</p>",
    )
    out = render_email(template, ctx(who))
    assert out.subject == "Hi <script>alert(1)</script>"
    assert out.text == "Hi <script>alert(1)</script> of Ben & Jerry's"
    assert out.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt; of Ben &amp; Jerry&#39;s</p>"


def test_urls_in_html_are_attribute_escaped() -> None:  # D1: the unsubscribe link still works
    template = email(html='<a href="{{ unsubscribe_url }}">x</a><a href="{{ link(\'webinar\') }}">y</a>')
    out = render_email(template, ctx())
    assert out.html == (
        '<a href="https://mail.acme.test/u/tok?s=onboarding&amp;all=0">x</a>'
        '<a href="https://mail.acme.test/c/tok-web?a=1&amp;b=2">y</a>'
    )


def test_email_without_html_has_none() -> None:
    assert render_email(email(), ctx()).html is None


@pytest.mark.parametrize(
    ("subject", "first_name", "expected"),
    [
        ("Hello\n{{ contact.first_name }}", "Ann", "Hello Ann"),
        (
            "Hello {{ contact.first_name }}",
            "Ann\r\nBcc: victim@example.test",
            "Hello Ann Bcc: victim@example.test",
        ),
        ("Hello {{ contact.first_name }}!", "Ann\n\n\r\n", "Hello Ann !"),
        ("A\r\rB\n \n C", "Ann", "A B C"),
        ("{{ contact.first_name }}", "Ann\u2028Lee\x85x\x0by", "Ann Lee x y"),
        ("Hi\n", "Ann", "Hi"),
    ],
)
def test_subject_line_breaks_collapse_to_one_space(subject: str, first_name: str, expected: str) -> None:
    # D1/D6: the subject becomes a mail header; a line break in it would start a new header.
    out = render_email(email(subject=subject), ctx(contact(first_name=first_name)))
    assert out.subject == expected


def test_text_body_keeps_its_line_breaks() -> None:
    out = render_email(email(subject="S", text="a\n{{ contact.first_name }}\nb"), ctx())
    assert out.text == "a\nAnn\nb"


# --------------------------------------------------------------------------------------------------
# link(NAME)


def test_link_calls_link_url_with_the_name() -> None:  # SPEC §2 `link(NAME)`, D2 (caller signs)
    calls: list[str] = []

    def link_url(name: str) -> str:
        calls.append(name)
        return f"https://t.test/{name}"

    out = render_email(email(text="{{ link('offer') }} {{ link('webinar') }}"), ctx(link_url=link_url))
    assert out.text == "https://t.test/offer https://t.test/webinar"
    assert calls == ["offer", "webinar"]


def test_unknown_link_is_a_render_failure_naming_it() -> None:
    with pytest.raises(RenderFailure, match="no catalog link is named 'nope'"):
        text_of("Go: {{ link('nope') }}")


def test_link_needs_a_name() -> None:
    with pytest.raises(RenderFailure, match="link name in quotes"):
        text_of("{{ link(3) }}")


def test_other_link_url_errors_are_the_callers_and_propagate() -> None:
    def broken(name: str) -> str:
        raise RuntimeError("signing key not loaded")

    with pytest.raises(RuntimeError, match="signing key not loaded"):
        render_email(email(text="{{ link('offer') }}"), ctx(link_url=broken))


# --------------------------------------------------------------------------------------------------
# Errors a marketer can act on (render_error)


def test_syntax_error_is_a_render_failure_with_its_line() -> None:
    with pytest.raises(RenderFailure) as caught:
        text_of("Hello\n{% if contact.first_name %}\nno endif")
    assert caught.value.part == "text"
    assert caught.value.line is not None
    assert "syntax error" in caught.value.message
    assert f"line {caught.value.line}" in caught.value.message


def test_syntax_error_in_subject_names_the_subject() -> None:
    with pytest.raises(RenderFailure) as caught:
        render_email(email(subject="Hi {{ contact.first_name "), ctx())
    assert caught.value.part == "subject"
    assert "subject" in caught.value.message


def test_error_while_rendering_is_a_render_failure_with_its_line() -> None:
    with pytest.raises(RenderFailure) as caught:
        text_of("ok\n{{ contact.score / 0 }}")
    assert caught.value.line == 2
    assert "ZeroDivisionError" in caught.value.message
    assert "{{ contact.score / 0 }}" in caught.value.message


# --------------------------------------------------------------------------------------------------
# SMS and postcards


def test_sms_renders_plain_text() -> None:  # SPEC §2 `reminder-sms`
    out = render_sms(SmsTemplate(sms="Starts in 1h, {{ contact.first_name }} & co"), ctx())
    assert out == RenderedText(text="Starts in 1h, Ann & co")


def test_sms_missing_variable_is_reported_for_the_sms() -> None:  # SPEC S11
    with pytest.raises(MissingVariable) as caught:
        render_sms(SmsTemplate(sms="Hi {{ contact.first_name }}"), ctx(contact(first_name=None)))
    assert (caught.value.path, caught.value.part) == ("contact.first_name", "sms")


def test_postcard_renders_text_and_escaped_html() -> None:
    who = contact(first_name="<Ann>")
    template = PostcardTemplate(
        text="Thanks {{ contact.first_name }}", html="<b>{{ contact.first_name }}</b>"
    )
    assert render_postcard(template, ctx(who)) == RenderedText(text="Thanks <Ann>", html="<b>&lt;Ann&gt;</b>")
    assert render_postcard(PostcardTemplate(text="Thanks"), ctx()) == RenderedText(text="Thanks")


# --------------------------------------------------------------------------------------------------
# Compile once


def test_templates_are_compiled_once_for_many_contacts() -> None:
    render._compile.cache_clear()
    template = email(subject="Hi {{ contact.first_name }}", text="{{ contact.score }}", html="<p>x</p>")
    for n in range(500):
        render_email(template, ctx(contact(id=n, first_name=f"C{n}", score=n)))
    info = render._compile.cache_info()
    assert info.misses == 3  # subject, text, html
    assert info.hits == 3 * 499


def test_a_template_that_does_not_compile_is_parsed_once() -> None:
    render._compile.cache_clear()
    for _ in range(50):
        with pytest.raises(RenderFailure):
            text_of("{% if %}")
    assert render._compile.cache_info().misses == 2  # the subject, and the broken text


# --------------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=300, deadline=None)
@given(
    first_name=st.text(),
    subject=st.sampled_from(["{{ contact.first_name }}", "Hi {{ contact.first_name }}!\n"]),
)
def test_any_first_name_never_breaks_the_subject(first_name: str, subject: str) -> None:  # D1, D6
    out = render_email(
        email(subject=subject, html="<p>{{ contact.first_name }}</p>"), ctx(contact(first_name=first_name))
    )
    assert "\r" not in out.subject and "\n" not in out.subject
    assert out.html == f"<p>{escape(first_name)}</p>"


@settings(max_examples=500, deadline=None)
@given(subject=st.text(min_size=1), first_name=st.none() | st.text())
def test_any_subject_source_renders_to_one_line_or_fails_cleanly(
    subject: str, first_name: str | None
) -> None:
    # SPEC S11: whatever a marketer writes, the scheduler sees a result, a missing variable or a render error.
    try:
        out = render_email(email(subject=subject), ctx(contact(first_name=first_name)))
    except (MissingVariable, RenderFailure):
        return
    assert "\r" not in out.subject and "\n" not in out.subject


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet="{}%#-+~|.()'\"abc \n", max_size=20),
    suffix=st.text(alphabet="{}%#-+~|.()'\"abc \n", max_size=20),
)
def test_template_syntax_soup_fails_cleanly(prefix: str, suffix: str) -> None:
    source = f"{prefix}{{{{ contact.first_name }}}}{suffix}"
    try:
        out = render_email(email(subject=source, text=source, html=source), ctx())
    except (MissingVariable, RenderFailure):
        return
    assert "\r" not in out.subject and "\n" not in out.subject


# --------------------------------------------------------------------------------------------------
# variables_used / links_used (validation and explain)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ contact.first_name }}", {"contact.first_name"}),
        ("{{ contact.fields.company | default('x') }}", {"contact.fields.company"}),
        (
            "{{ contact['fields']['plan'] }} {{ contact.fields.birthday }}",
            {"contact.fields.plan", "contact.fields.birthday"},
        ),
        ("{{ contact.first_name.upper() }}", {"contact.first_name"}),
        (
            "{% if contact.fields.plan == 'pro' %}{{ workspace.name }}{% endif %}",
            {"contact.fields.plan", "workspace.name"},
        ),
        ("{{ unsubscribe_url }} {{ link('offer') }}", {"unsubscribe_url"}),
        ("{% for i in range(3) %}{{ loop.index }}{{ i }}{% endfor %}", set()),
        ("{% set greeting = 'hi' %}{{ greeting }} {{ foo.bar }}", {"foo.bar"}),
        ("{{ contact.fields[key] }}", {"contact.fields", "key"}),
        ("plain text", set()),
    ],
)
def test_variables_used(source: str, expected: set[str]) -> None:
    assert variables_used(source) == frozenset(expected)


def test_variables_used_on_a_syntax_error_is_a_render_failure() -> None:
    with pytest.raises(RenderFailure, match="syntax error"):
        variables_used("{{ contact.first_name ")


def test_links_used_lists_literal_link_names() -> None:
    assert links_used("{{ link('offer') }} {{ link(\"webinar\") }} {{ link(contact.fields.x) }}") == {
        "offer",
        "webinar",
    }


def test_d2_open_pixel_goes_before_the_last_body_close_or_at_the_end() -> None:
    """D2: the pixel sits just before the last `</body>` (any case), else at the end; its URL is
    attribute-escaped."""
    from dripflow.core.render import with_open_pixel

    url = "https://t.test/t/o/w/a.b?x=1&y=2"
    img = '<img src="https://t.test/t/o/w/a.b?x=1&amp;y=2" width="1" height="1" alt="" style="display:none">'
    assert with_open_pixel("<p>Hi</p>", url) == "<p>Hi</p>" + img
    assert with_open_pixel("<BODY>Hi</BODY></html>", url) == "<BODY>Hi" + img + "</BODY></html>"
    nested = "<body>a</body><!-- </body> -->"
    assert with_open_pixel(nested, url) == "<body>a</body><!-- " + img + "</body> -->"
