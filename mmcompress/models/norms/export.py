"""ONNX export of a model holding UN / TokenBN layers, folded first."""

import copy
import io
from typing import Optional

import torch
from torch import Tensor, nn

from .fuse import fuse_un


def export_folded_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: Optional[str] = None,
    opset_version: int = 17,
    dynamic_batch: bool = True,
) -> bytes:
    """Fold the norms of a copy of ``model`` (:func:`fuse_un`, unfoldable ones
    kept as a per-channel ``Mul + Add``) and export the copy to ONNX.

    Args:
        model (nn.Module): Maps one tensor to a tensor (wrap an OpenMMLab
            model with ``mmcompress.quant.export.TensorModeWrapper``).
        example_input (Tensor): An input of the right shape.
        path (str, optional): Where to write the file; the bytes are returned
            either way.
        opset_version (int): ONNX opset. Defaults to 17.
        dynamic_batch (bool): Make the batch dimension dynamic. Defaults to
            True.

    Returns:
        bytes: The serialized ONNX model.
    """
    folded = copy.deepcopy(model).eval()
    fuse_un(folded, (example_input,), on_unfoldable='affine')
    buffer = io.BytesIO()
    axes = {'input': {0: 'batch'}, 'output': {0: 'batch'}} if dynamic_batch else None
    torch.onnx.export(
        folded,
        (example_input,),
        buffer,
        dynamo=False,
        opset_version=opset_version,
        input_names=['input'],
        output_names=['output'],
        dynamic_axes=axes,
        do_constant_folding=True,
    )
    data = buffer.getvalue()
    if path is not None:
        with open(path, 'wb') as file:
            file.write(data)
    return data
