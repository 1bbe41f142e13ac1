"""Write a benchmark's generated markdown into a doc page without touching
the hand-written text around it.

The generated part sits between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->``; a page without these markers gets the block appended.
"""

import os
import os.path as osp


def write_block(path: str, name: str, body: str) -> None:
    """Replace the block ``name`` of the markdown file ``path`` by ``body``.

    Args:
        path (str): The markdown page (created when missing).
        name (str): Name of the block (one page may hold several).
        body (str): The generated markdown, without the markers.
    """
    begin, end = f'<!-- {name}:begin -->', f'<!-- {name}:end -->'
    block = f'{begin}\n{body.strip()}\n{end}'
    text = open(path).read() if osp.isfile(path) else ''
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip('\n') + ('\n\n' if text else '') + block + '\n'
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
