"""Fixtures shared by every test folder."""

import random

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True, scope='module')
def no_default_scope_from_other_modules():
    """Each test module starts without a current default scope.

    Runners, tools run in-process and ``init_default_scope`` make a scope
    current and leave it so; a bare type name built later then resolves in
    whichever downstream ran last. Dropping the scopes between modules makes a
    module's result independent of the modules run before it in the process
    (their order differs between a serial run and the xdist workers).
    """
    DefaultScope._instance_dict.clear()
    yield


@pytest.fixture
def deterministic():
    """One intra-op thread and RNGs seeded with 0 (torch, numpy, random).

    For training tests with an accuracy or loss threshold: on CPU the result
    then depends neither on the machine's core count nor on the tests that ran
    before. The thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
    torch.set_num_threads(threads)


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
