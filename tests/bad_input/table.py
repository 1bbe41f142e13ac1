"""The "common mistakes" table of the docs, generated from the bad-input tests.

Every test function in ``tests/bad_input/test_*.py`` documents one user mistake with a
docstring of this form::

    \"\"\"<The mistake, as a user would describe it, one line>.

    Message: <a fragment of the error or warning text the user sees>
    \"\"\"

and asserts that message. This module reads those docstrings (without importing the
test modules) and writes ``docs/common_mistakes.md``; ``test_docs_table.py`` fails when
the page and the tests disagree.

Usage: ``python -m tests.bad_input.table`` (rewrites the page).
"""

import ast
import glob
import os.path as osp
from typing import List, NamedTuple

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
PAGE = osp.join(REPO, 'docs', 'common_mistakes.md')

HEADER = """# Common mistakes and what mmcompress says

Each row is a mistake a user can make through a config, a tool or the Python API, and
the message mmcompress answers with (an error, or a warning where the case can be
legitimate). Every row is asserted by its test in `tests/bad_input/`, and this page is
generated from those tests: `python -m tests.bad_input.table`
(`tests/bad_input/test_docs_table.py` fails when the two disagree).

"""


class Case(NamedTuple):
    """One documented mistake.

    Args:
        area (str): The test module's area (``test_<area>.py``).
        test (str): The test function's name.
        mistake (str): The mistake, one line.
        message (str): The message fragment the user sees.
    """

    area: str
    test: str
    mistake: str
    message: str


def parse_docstring(doc: str, where: str) -> tuple:
    """Split a bad-input docstring into the mistake and the message.

    Args:
        doc (str): The test function's docstring.
        where (str): ``file::function``, named in the error.

    Returns:
        tuple: ``(mistake, message)``.
    """
    lines = [line.strip() for line in doc.strip().splitlines()]
    messages = [line for line in lines if line.startswith('Message:')]
    if not lines or not messages:
        raise ValueError(
            f'{where}: a bad-input test needs a docstring whose first line names the '
            f"mistake and a line 'Message: <text the user sees>'; got {doc!r}"
        )
    message = messages[0][len('Message:') :].strip()
    return lines[0].rstrip('.'), message


def collect_cases(folder: str = HERE) -> List[Case]:
    """Read every bad-input test's docstring.

    Args:
        folder (str): The folder of ``test_*.py`` files.

    Returns:
        list[Case]: The cases, ordered by area and then by position in the file.
    """
    cases = []
    for path in sorted(glob.glob(osp.join(folder, 'test_*.py'))):
        area = osp.basename(path)[len('test_') : -len('.py')]
        if area == 'docs_table':
            continue
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith('test'):
                where = f'{osp.relpath(path, REPO)}::{node.name}'
                doc = ast.get_docstring(node)
                if doc is None:
                    raise ValueError(f'{where} has no docstring (see this module)')
                mistake, message = parse_docstring(doc, where)
                cases.append(Case(area, node.name, mistake, message))
    return cases


def _cell(text: str) -> str:
    return text.replace('|', '\\|')


def render(cases: List[Case]) -> str:
    """The markdown page for ``cases``.

    Args:
        cases (list[Case]): From :func:`collect_cases`.

    Returns:
        str: The page text.
    """
    rows = [
        HEADER,
        f'{len(cases)} cases.\n\n',
        '| # | area | mistake | message (fragment) | test |\n',
        '|---|---|---|---|---|\n',
    ]
    for i, case in enumerate(cases, 1):
        rows.append(
            f'| {i} | {case.area} | {_cell(case.mistake)} | '
            f'`{_cell(case.message)}` | `{case.test}` |\n'
        )
    return ''.join(rows)


if __name__ == '__main__':
    text = render(collect_cases())
    with open(PAGE, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'wrote {PAGE}')
