"""Bad input to the integer ONNX export's deconvolution rewrite
(``optimize_for_onnxruntime``): a quantized deconv it cannot run as an
integer conv stays a float ``ConvTranspose``, with a warning naming it."""

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import quantize_model
from mmcompress.quant.export import export_onnx, optimize_for_onnxruntime


class GroupedDeconv(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2)
        self.final = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.final(torch.relu(self.deconv(torch.relu(self.stem(x)))))


def test_int8_export_of_a_grouped_deconvolution():
    """A quantized grouped deconv exported for onnxruntime stays float.

    Message: these quantized deconvolutions stay float ConvTranspose
    """
    import onnx

    torch.manual_seed(0)
    model = quantize_model(
        GroupedDeconv(),
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
    )
    x = torch.randn(2, 1, 6, 6)
    model(x)
    qdq = export_onnx(model.eval(), x[:1])
    with pytest.warns(
        UserWarning,
        match=r'these quantized deconvolutions stay float ConvTranspose .*: '
        r'/deconv/ConvTranspose \(grouped deconvolution\)',
    ):
        fast = optimize_for_onnxruntime(qdq, [x])
    ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    assert ops.count('ConvTranspose') == 1 and 'DepthToSpace' not in ops
