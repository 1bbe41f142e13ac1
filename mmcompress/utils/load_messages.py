"""The wording of :mod:`.load_check`'s messages about unloaded weights.

:func:`top_prefixes` folds the keys that stayed unloaded into the module prefixes
they cover, :func:`shorten` cuts a long list, and :func:`prefix_hint` reads the
likely cause (a KD checkpoint, a wrapped model, a sub-module checkpoint, another
model) off the checkpoint's key names.
"""

import os.path as osp
from collections import Counter
from typing import Iterable, List


def top_prefixes(keys: List[str], own: Iterable[str]) -> List[str]:
    """Shortest module prefixes whose every key is in ``keys``, plus the keys
    covered by no such prefix, e.g. ``['head.*', 'backbone.stem.conv.weight']``.

    Args:
        keys (list[str]): The state-dict keys to describe.
        own (Iterable[str]): All state-dict keys of the model.

    Returns:
        list[str]: Prefixes (ending in ``.*``) and single keys, in key order.
    """
    wanted = set(keys)
    total, hit = Counter(), Counter()
    for key in own:
        if key.endswith('num_batches_tracked'):
            continue
        parts = key.split('.')
        for i in range(1, len(parts)):
            prefix = '.'.join(parts[:i])
            total[prefix] += 1
            hit[prefix] += key in wanted
    found = []
    for key in keys:
        parts = key.split('.')
        prefixes = ('.'.join(parts[:i]) for i in range(1, len(parts)))
        whole = next((p for p in prefixes if hit[p] == total[p]), None)
        item = whole + '.*' if whole else key
        if item not in found:
            found.append(item)
    return found


def shorten(items: List[str], limit: int = 6) -> str:
    """The first ``limit`` items joined by commas, with the total if cut.

    Args:
        items (list[str]): What to list.
        limit (int): How many to show. Defaults to 6.

    Returns:
        str: E.g. ``'a, b ... (9 in all)'``.
    """
    shown = ', '.join(items[:limit])
    return shown + (f' ... ({len(items)} in all)' if len(items) > limit else '')


def prefix_hint(missing: List[str], ckpt_keys: Iterable[str], filename: str) -> str:
    """The likely cause of missing keys, read off the checkpoint's key names.

    Args:
        missing (list[str]): Model keys the checkpoint left unloaded.
        ckpt_keys (Iterable[str]): The checkpoint's keys.
        filename (str): The checkpoint's name (for the KD student file hint).

    Returns:
        str: A sentence (with a leading space) naming the cause and the fix.
    """
    ckpt_keys = list(ckpt_keys)
    extra = Counter()
    for key in missing:
        for ck in ckpt_keys:
            if ck.endswith('.' + key):
                extra[ck[: -len(key)]] += 1
    if extra:
        prefix, count = extra.most_common(1)[0]
        if count >= max(1, len(missing) // 2):
            if prefix == 'student.':
                stem, ext = osp.splitext(filename)
                student = f'{stem}_student{ext or ".pth"}'
                there = ' (it exists)' if osp.isfile(student) else ''
                return (
                    ' The checkpoint holds the model under `student.`: it is a '
                    'DistillModel (KD) checkpoint. Load the plain student '
                    'checkpoint DistillModel writes next to it, '
                    f'{student}{there}, or use the distillation config.'
                )
            return (
                f' The checkpoint holds these weights under the prefix '
                f'`{prefix}`: it was saved from a model that wraps this one. '
                'Save or pick the plain model checkpoint, or load with '
                f'revise_keys=[(r"^{prefix.rstrip(".")}\\.", "")].'
            )
    shorter = Counter()
    ckpt_set = set(ckpt_keys)
    for key in missing:
        parts = key.split('.')
        for i in range(1, len(parts)):
            if '.'.join(parts[i:]) in ckpt_set:
                shorter['.'.join(parts[:i]) + '.'] += 1
                break
    if shorter:
        prefix, count = shorter.most_common(1)[0]
        if count >= max(1, len(missing) // 2):
            return (
                f' The checkpoint holds only a part of the model (its keys '
                f'match under `{prefix}`): load it into that part with '
                f"{prefix.rstrip('.')}=dict(init_cfg=dict(type='Pretrained', "
                'checkpoint=...)) instead of load_from.'
            )
    return (
        ' The checkpoint is for another model (e.g. the teacher, or another '
        'architecture): give the checkpoint trained with this config.'
    )
