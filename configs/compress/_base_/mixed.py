# tools/compress.py recipe `mixed` (with --latency-ms X): per-layer precision
# under a latency budget, then the `qat-int8` pipeline with that allocation.
#   sensitivity  KL divergence of the float model's output when one layer is
#                quantized (8 bits; ZeroQ's layer sensitivity) on
#                `calib_batches` training batches
#   latency      each layer alone in onnxruntime on this machine, float and
#                8-bit integer graph (median of `runs`), and BOPs; with
#                --latency-ms also each layer inside the whole integer graph
#                (the graph with that one layer float against the all-8-bit
#                graph, `graph_runs` alternate runs): the table the latency
#                budget uses
#   allocate     float / 8 / 4 bits per layer: least summed sensitivity within
#                --latency-ms or --gbops (exact knapsack), as
#                quant.layer_overrides
# onnxruntime's CPU kernels have no 4-bit form (a 4-bit layer runs the 8-bit
# kernel at the 8-bit latency), so a latency budget chooses between float and
# 8-bit layers; `options` may list 4 for runtimes where it is faster.
_base_ = ['./qat_int8.py']
stages = [
    'float_test',
    'sensitivity',
    'latency',
    'allocate',
    'qat',
    'qat_test',
    'export',
    'onnx_test',
    'speed',
]
mixed = dict(options=[None, 8, 4], calib_batches=4, runs=20, graph_runs=50)
