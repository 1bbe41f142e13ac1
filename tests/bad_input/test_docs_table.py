"""docs/common_mistakes.md lists exactly the mistakes the bad-input tests assert."""

import pytest

from tests.bad_input.table import PAGE, collect_cases, parse_docstring, render


def test_page_matches_the_tests():
    cases = collect_cases()
    with open(PAGE, encoding='utf-8') as f:
        page = f.read()
    assert page == render(cases), (
        'docs/common_mistakes.md is out of date: run python -m tests.bad_input.table'
    )


def test_docstring_without_message_line_is_refused():
    with pytest.raises(ValueError, match="'Message: <text the user sees>'"):
        parse_docstring('A mistake.\n\nNo message here.', 'x.py::test_x')


def test_docstring_parts():
    mistake, message = parse_docstring(
        'Bits out of range.\n\n    Message: valid bit-widths are 2..8\n', 'x.py::t'
    )
    assert (mistake, message) == ('Bits out of range', 'valid bit-widths are 2..8')
