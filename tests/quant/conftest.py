"""Fixtures shared by the quantization tests."""

import pytest
import torch
from torch import nn


@pytest.fixture
def onnx_op_types(tmp_path):
    """A function giving the op types of the graph onnxruntime runs for an
    ONNX model (after its own fusions, saved with
    ``optimized_model_filepath``)."""

    def op_types(blob: bytes) -> list:
        import onnx
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(tmp_path / 'optimized.onnx')
        ort.InferenceSession(blob, options, providers=['CPUExecutionProvider'])
        return [
            n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node
        ]

    return op_types


@pytest.fixture
def qat_steps():
    """A function training a classifier (``mode='tensor'`` logits) with
    cross-entropy and SGD for one step per batch, so quantizers initialise
    and BN statistics move, then putting it in eval mode."""

    def train(
        model: nn.Module, batches, labels: torch.Tensor, lr: float = 0.01
    ) -> None:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for batch in batches:
            loss = nn.functional.cross_entropy(model(batch, mode='tensor'), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()

    return train
