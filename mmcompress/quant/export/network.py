"""The network part of an OpenMMLab model, as the ONNX export and the
onnxruntime evaluation see it.

Every single-stage OpenMMLab model computes ``head.forward(extract_feat(x))``
before its post-processing: mmpretrain classifiers (``head``), mmdet
single-stage detectors (``bbox_head``: per-level class scores and box
regressions), mmseg encoder-decoders (``decode_head``: class logits at feature
resolution) and mmpose top-down estimators (``head``: heatmaps). That part is
what :class:`NetworkWrapper` exports; the post-processing (box decoding and
NMS, resizing and argmax, heatmap decoding, flip test) stays the downstream's
own Python (``predict_by_feat`` / ``decode``), run on the onnxruntime outputs
by :class:`~.ort_model.ORTModel`.
"""

from typing import List, Tuple

import torch.nn as nn
from torch import Tensor
from torch.utils._pytree import (
    tree_flatten,
    tree_unflatten,
    treespec_dumps,
    treespec_loads,
)

#: Attribute names of the head in mmdet / mmseg / mmpretrain / mmpose models,
#: in lookup order.
HEAD_NAMES = ('bbox_head', 'decode_head', 'head')
#: ONNX metadata key of the head's output nesting.
STRUCTURE_KEY = 'mmcompress.output_structure'


def network_head(model: nn.Module) -> Tuple[str, nn.Module]:
    """The head that :class:`NetworkWrapper` runs after ``extract_feat``.

    Args:
        model (nn.Module): An OpenMMLab model.

    Returns:
        tuple: ``(attribute name, head module)``.

    Raises:
        TypeError: The model has no ``extract_feat`` or none of the heads of
            :data:`HEAD_NAMES` (e.g. two-stage detectors, whose ``roi_head``
            needs the proposals: only the network of single-stage models is
            exported).
    """
    heads = [n for n in HEAD_NAMES if isinstance(getattr(model, n, None), nn.Module)]
    if not hasattr(model, 'extract_feat') or not heads:
        has_roi = isinstance(getattr(model, 'roi_head', None), nn.Module)
        hint = (
            ' (two-stage detectors: the roi_head needs proposals from Python; '
            'export a single-stage detector such as RetinaNet / GFL / FCOS)'
            if has_roi
            else ''
        )
        raise TypeError(
            f'{type(model).__name__} has no extract_feat() with one of the heads '
            f'{", ".join(HEAD_NAMES)}: the export takes the network part '
            f'head.forward(extract_feat(x)) of single-stage OpenMMLab models{hint}'
        )
    return heads[0], getattr(model, heads[0])


class NetworkWrapper(nn.Module):
    """``head.forward(extract_feat(x))`` of an OpenMMLab model, its outputs
    flattened to a tuple of tensors (the ONNX graph outputs).

    The nesting of the head's outputs (e.g. RetinaNet's two lists of
    per-level maps) is recorded on the first call (:attr:`structure`) so that
    :meth:`unflatten` rebuilds it from the onnxruntime outputs.

    Args:
        model (nn.Module): An OpenMMLab model (see :func:`network_head`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head_name, _ = network_head(model)
        self.structure = None
        # the wrapped model's mode: torch.onnx.export restores the wrapper's
        # mode on every submodule after exporting
        self.train(model.training)

    def forward(self, inputs: Tensor):
        head = getattr(self.model, self.head_name)
        outputs = head(self.model.extract_feat(inputs))
        flat, self.structure = tree_flatten(outputs)
        return flat[0] if len(flat) == 1 else tuple(flat)

    def output_names(self) -> List[str]:
        """Graph output names: ``output`` for one tensor, else ``output0``,
        ``output1``... in flattening order (needs one forward first)."""
        if self.structure is None:
            raise RuntimeError('run NetworkWrapper once before asking output names')
        count = self.structure.num_leaves
        return ['output'] if count == 1 else [f'output{i}' for i in range(count)]

    def unflatten(self, flat: List[Tensor]):
        """The head's output nesting rebuilt from the flat graph outputs."""
        return tree_unflatten(list(flat), self.structure)

    def metadata(self) -> dict:
        """ONNX metadata that lets :class:`~.ort_model.ORTModel` rebuild the
        head's output nesting (:data:`STRUCTURE_KEY`)."""
        return {STRUCTURE_KEY: treespec_dumps(self.structure)}


def add_metadata(onnx_bytes: bytes, metadata: dict) -> bytes:
    """Write ``metadata`` into the model's ``metadata_props``."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    for key, value in metadata.items():
        entry = next((p for p in model.metadata_props if p.key == key), None)
        if entry is None:
            entry = model.metadata_props.add()
            entry.key = key
        entry.value = value
    return model.SerializeToString()


def output_structure(session):
    """The head's output nesting stored by :func:`add_metadata` in an
    onnxruntime session's model, or None (one flat list of outputs)."""
    stored = session.get_modelmeta().custom_metadata_map.get(STRUCTURE_KEY)
    return None if stored is None else treespec_loads(stored)
