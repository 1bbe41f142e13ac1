"""onnxruntime helpers: a CPU session and the agreement check between
PyTorch and onnxruntime."""

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor


def onnxruntime_session(
    onnx_model: bytes, threads: int = 1, flush_denormals: bool = False
):
    """An onnxruntime CPU session with all graph optimizations.

    Args:
        onnx_model (bytes): Serialized model.
        threads (int): Intra-op threads. Defaults to 1.
        flush_denormals (bool): Treat denormal floats as zero
            (``session.set_denormal_as_zero``; a float model with random
            weights can otherwise spend its time on denormal arithmetic).
            Defaults to False.

    Returns:
        onnxruntime.InferenceSession: The session.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if flush_denormals:
        options.add_session_config_entry('session.set_denormal_as_zero', '1')
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_model, options, providers=['CPUExecutionProvider'])


def compare_with_onnxruntime(
    model: nn.Module, session, batches: Sequence[Tensor]
) -> dict:
    """Top-1 agreement and output error between PyTorch and onnxruntime.

    Args:
        model (nn.Module): The PyTorch model (one tensor in, logits out).
        session: An onnxruntime session of its export.
        batches (Sequence[Tensor]): Input batches.

    Returns:
        dict: ``top1_agreement`` (fraction), ``max_abs_diff``, ``num_samples``.
    """
    model = model.eval()
    name = session.get_inputs()[0].name
    agree, total, max_diff = 0, 0, 0.0
    with torch.no_grad():
        for batch in batches:
            reference = model(batch)
            if isinstance(reference, (tuple, list)):
                reference = reference[0]
            result = torch.from_numpy(session.run(None, {name: batch.numpy()})[0])
            agree += int((reference.argmax(-1) == result.argmax(-1)).sum())
            total += batch.shape[0]
            max_diff = max(max_diff, float((reference - result).abs().max()))
    return dict(
        top1_agreement=agree / max(total, 1), max_abs_diff=max_diff, num_samples=total
    )


def compare_outputs(model: nn.Module, session, batches: Sequence[Tensor]) -> dict:
    """Per-output error between PyTorch and onnxruntime, for networks with
    several or dense outputs (detection, segmentation, pose heads).

    Args:
        model (nn.Module): The PyTorch network (one tensor in; a tensor or a
            tuple of tensors out, as :class:`~.network.NetworkWrapper`).
        session: An onnxruntime session of its export.
        batches (Sequence[Tensor]): Input batches.

    Returns:
        dict: ``max_abs_diff`` and ``output_abs_max`` (lists, one entry per
        output, over all batches), ``mean_abs_diff`` (over all outputs and
        elements) and ``num_samples``.
    """
    import numpy as np

    model = model.eval()
    name = session.get_inputs()[0].name
    max_diff, peak, total, diff_sum, count = None, None, 0, 0.0, 0
    with torch.no_grad():
        for batch in batches:
            reference = model(batch)
            if isinstance(reference, Tensor):
                reference = (reference,)
            results = session.run(None, {name: batch.numpy()})
            diffs = [np.abs(r.numpy() - o) for r, o in zip(reference, results)]
            batch_max = [float(d.max()) for d in diffs]
            batch_peak = [float(r.abs().max()) for r in reference]
            max_diff = batch_max if max_diff is None else map(max, max_diff, batch_max)
            peak = batch_peak if peak is None else map(max, peak, batch_peak)
            max_diff, peak = list(max_diff), list(peak)
            diff_sum += sum(float(d.sum()) for d in diffs)
            count += sum(d.size for d in diffs)
            total += batch.shape[0]
    return dict(
        max_abs_diff=max_diff,
        output_abs_max=peak,
        mean_abs_diff=diff_sum / max(count, 1),
        num_samples=total,
    )
