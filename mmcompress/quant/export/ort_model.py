"""Evaluate an exported network in onnxruntime with the downstream's own
post-processing and metric (:class:`ORTModel`).

The ONNX graph holds the network part ``head(extract_feat(x))``
(:class:`~.network.NetworkWrapper`); everything after it stays the
downstream's Python: RetinaNet's ``predict_by_feat`` (anchors, box decoding,
NMS), mmseg's ``predict_by_feat`` and ``postprocess_result`` (resize, crop,
argmax), mmpose's heatmap decoding and flip test. :class:`ORTModel` builds the
downstream model from its config and makes its ``extract_feat`` run the
onnxruntime session and its head hand the session's outputs through, so the
downstream ``predict`` code runs unchanged on onnxruntime outputs.
"""

from typing import Optional

import torch
from mmengine.model import BaseModel
from torch import Tensor
from torch.utils._pytree import tree_unflatten

from mmcompress.registry import MODELS

from .network import network_head, output_structure
from .runtime import onnxruntime_session


class _SessionOutputs:
    """onnxruntime outputs on their way from ``extract_feat`` to the head."""

    def __init__(self, value) -> None:
        self.value = value


@MODELS.register_module()
class ORTModel(BaseModel):
    """An OpenMMLab model whose network part runs in onnxruntime.

    Use it in a test config (``tools/test_onnx.py`` writes one) with the stock
    ``tools/test.py``::

        model = dict(type='ORTModel', onnx='model.onnx', model=<model config>)

    Only prediction is supported (``mode='predict'``); the wrapped model's
    weights are not used (the ONNX file holds them), its data preprocessor,
    test settings and post-processing are.

    Args:
        model (dict | nn.Module): The downstream model (config or module) the
            ONNX file was exported from, e.g. the QAT config's ``model``.
        onnx (str): Path of the ``.onnx`` file (from ``tools/export_onnx.py``).
        threads (int): onnxruntime intra-op threads. Defaults to 1.
        data_preprocessor (dict, optional): Given to ``model`` when its config
            has none (mmengine's runner passes a config's top-level
            ``data_preprocessor`` here, as mmpretrain configs have it).
        init_cfg (dict, optional): Unused, for the BaseModel signature.
    """

    def __init__(
        self,
        model,
        onnx: str,
        threads: int = 1,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        if isinstance(model, dict):
            model = dict(model)
            if data_preprocessor is not None:
                model.setdefault('data_preprocessor', data_preprocessor)
        network = MODELS.build(model) if isinstance(model, dict) else model
        super().__init__(data_preprocessor=network.data_preprocessor, init_cfg=None)
        self.network = network.eval()
        self.onnx = onnx
        with open(onnx, 'rb') as file:
            self.session = onnxruntime_session(file.read(), threads)
        self.structure = output_structure(self.session)
        self.input_name = self.session.get_inputs()[0].name
        head_name, head = network_head(network)
        network.extract_feat = self._run_session
        head.forward = self._hand_through(head_name)

    def _run_session(self, inputs: Tensor, *args, **kwargs) -> _SessionOutputs:
        array = inputs.detach().cpu().float().contiguous().numpy()
        outputs = [
            torch.from_numpy(o)
            for o in self.session.run(None, {self.input_name: array})
        ]
        if self.structure is not None:
            return _SessionOutputs(tree_unflatten(outputs, self.structure))
        return _SessionOutputs(outputs[0] if len(outputs) == 1 else tuple(outputs))

    @staticmethod
    def _hand_through(head_name: str):
        def forward(feats, *args, **kwargs):
            if not isinstance(feats, _SessionOutputs):
                raise TypeError(
                    f'ORTModel: {head_name}.forward got {type(feats).__name__}, '
                    'not the onnxruntime outputs of extract_feat(); only the '
                    'downstream predict path (mode="predict") is supported'
                )
            return feats.value

        return forward

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'predict'):
        """Predict with the downstream's own ``predict`` (``mode='predict'``
        only; training and ``'tensor'`` mode are PyTorch's job).

        Raises:
            ValueError: ``mode`` is not ``'predict'``.
        """
        if mode != 'predict':
            raise ValueError(
                f'ORTModel runs mode="predict" only, got mode={mode!r}: train '
                'and export the PyTorch model, evaluate its ONNX file here'
            )
        with torch.no_grad():
            return self.network(inputs, data_samples, mode='predict')
