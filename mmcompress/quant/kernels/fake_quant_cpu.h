// Shared parts of the fused fake-quantization kernels (fake_quant_cpu.cpp:
// LSQ, EWGS; daq_n2uq_cpu.cpp: DAQ, N2UQ): element-wise helpers, the
// per-run loops and the parallel drivers.
//
// x is seen as (outer, C, inner) with one set of range parameters per channel
// c (C = 1: one set for the whole tensor). The backward recomputes the
// forward's intermediate values from x (the same operations in the same
// order, so the same values) and writes the input gradient and per-channel
// sums of the parameter-gradient terms. The sums are taken in double per
// fixed-size chunk and the chunks are added in order, so they do not depend on
// the number of threads.
//
//
// Rounding is to nearest, ties to even, as torch.round. Built with
// -ffp-contract=off (no fused multiply-add: the eager values bit for bit) and
// -fno-trapping-math (floor and conditional arithmetic vectorize; no value
// changes).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

namespace mmc {

constexpr int64_t kChunk = 16384;
constexpr int kLanes = 16;

// The hot loops are compiled for AVX-512, AVX2 and the baseline x86-64
// instruction set; the loader picks the one the CPU supports.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MMC_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MMC_CLONES
#endif
#define MMC_INLINE inline __attribute__((always_inline))

// 1.5 * 2^(mantissa bits): adding and subtracting it rounds |v| < 2^22
// (float) / 2^51 (double) to the nearest integer, ties to even.
template <typename T>
constexpr T kBig = sizeof(T) == 4 ? T(12582912.0) : T(6755399441055744.0);

// round(v): ties to even, the sign of a zero kept as torch.round keeps it,
// NaN stays NaN. Exact for |v| < 2^22; callers clamp larger values.
template <typename T>
MMC_INLINE T round_even(T v) {
  return std::copysign((std::fabs(v) + kBig<T>) - kBig<T>, v);
}

// torch.clamp: NaN stays NaN, -0.0 stays -0.0 against a bound of 0.
template <typename T>
MMC_INLINE T clamp(T v, T lo, T hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// torch.clamp with tensor bounds lo, hi, where a NaN bound gives NaN: pad is
// far_pad(lo, hi), NaN or -0 (v + -0 is v, -0 included).
template <typename T>
MMC_INLINE T clamp_padded(T v, T lo, T hi, T pad) {
  return clamp(v, lo, hi) + pad;
}

template <typename T>
T far_pad(T lo, T hi) {
  return std::isnan(lo) || std::isnan(hi) ? lo + hi : T(-0.0);
}

// exp(v) for v in [-1, 0] (Taylor series in Horner form, within about one
// ulp): vectorizes, where std::exp does not. exp_taylor<T, I, N>(v) is
// 1 + v / I (1 + v / (I + 1) (... (1 + v / N))).
template <typename T, int I, int N>
MMC_INLINE T exp_taylor(T v) {
  if constexpr (I > N) {
    return T(1);
  } else {
    return T(1) + exp_taylor<T, I + 1, N>(v) * (v * T(1.0 / I));
  }
}

template <typename T>
MMC_INLINE T exp_unit(T v) {
  return exp_taylor<T, 1, sizeof(T) == 4 ? 11 : 18>(v);
}

// The loops copy the op into a local, so the compiler knows the output
// stores do not change it.
template <typename Op, typename T>
MMC_INLINE void forward_run(const Op& op_ref, const T* __restrict__ x,
                            T* __restrict__ out, int64_t n) {
  const Op op = op_ref;
  for (int64_t k = 0; k < n; ++k) out[k] = op.forward(x[k]);
}

// Writes the input gradient of one run and adds its parameter-gradient terms
// to sums, accumulated in double (kLanes lanes, so the loop vectorizes). An op
// with kSums = 0 (no parameter gradient) writes the input gradient only.
template <typename Op, typename T>
MMC_INLINE void backward_run(const Op& op_ref, const T* __restrict__ x,
                             const T* __restrict__ g, T* __restrict__ gx,
                             int64_t n, double* sums) {
  constexpr int S = Op::kSums;
  const Op op = op_ref;
  T t[2];
  if constexpr (S == 0) {
    for (int64_t k = 0; k < n; ++k) op.backward(x[k], g[k], gx + k, t);
    return;
  }
  double lanes0[kLanes] = {}, lanes1[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      T u[2];
      op.backward(x[k + j], g[k + j], gx + k + j, u);
      lanes0[j] += double(u[0]);
      if constexpr (S == 2) lanes1[j] += double(u[1]);
    }
  }
  for (; k < n; ++k) {
    op.backward(x[k], g[k], gx + k, t);
    sums[0] += double(t[0]);
    if constexpr (S == 2) sums[1] += double(t[1]);
  }
  for (int j = 0; j < kLanes; ++j) {
    sums[0] += lanes0[j];
    if constexpr (S == 2) sums[1] += lanes1[j];
  }
}

// Entry points compiled once per instruction set (overloads per op and type).
#define MMC_ENTRIES(OP, T)                                                 \
  MMC_CLONES void forward_any(const OP& op, const T* x, T* o, int64_t n) { \
    forward_run(op, x, o, n);                                              \
  }                                                                        \
  MMC_CLONES void backward_any(const OP& op, const T* x, const T* g,       \
                               T* gx, int64_t n, double* sums) {           \
    backward_run(op, x, g, gx, n, sums);                                   \
  }
struct Layout {
  int64_t numel, channels, inner;
};

// The (outer, C, inner) view of x for per-channel parameters of length C
// along axis (C = 1: per tensor).
inline Layout layout_of(const at::Tensor& x, const at::Tensor& param, int64_t axis) {
  TORCH_CHECK(x.device().is_cpu() && param.device().is_cpu(),
              "mmcompress fake-quant kernel: CPU tensors only");
  TORCH_CHECK(x.is_contiguous(), "mmcompress fake-quant kernel: x must be contiguous");
  TORCH_CHECK(param.is_contiguous() && param.dim() == 1 &&
                  x.scalar_type() == param.scalar_type(),
              "mmcompress fake-quant kernel: parameters must be contiguous 1-D "
              "tensors of the dtype of x");
  const int64_t channels = param.numel();
  int64_t inner = 1;
  if (channels == 1) {
    inner = x.numel();
  } else {
    TORCH_CHECK(axis >= 0 && axis < x.dim() && x.size(axis) == channels,
                "mmcompress fake-quant kernel: parameter length does not match "
                "the size of x along axis");
    for (int64_t d = axis + 1; d < x.dim(); ++d) inner *= x.size(d);
  }
  return {x.numel(), channels, std::max<int64_t>(inner, 1)};
}

// Calls fn(begin, end, channel) for the runs of [begin, end) within one
// channel.
template <typename F>
inline void for_runs(const Layout& l, int64_t begin, int64_t end, F fn) {
  int64_t i = begin;
  while (i < end) {
    const int64_t row = i / l.inner;
    const int64_t stop = std::min(end, (row + 1) * l.inner);
    fn(i, stop, row % l.channels);
    i = stop;
  }
}

// out = op_c(x) elementwise; make_op(c) gives the op of channel c.
template <typename T, typename MakeOp>
at::Tensor fused_forward(const at::Tensor& x, const Layout& l, MakeOp make_op) {
  at::Tensor out = at::empty_like(x);
  const T* xp = x.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, l.numel, kChunk, [&](int64_t begin, int64_t end) {
    for_runs(l, begin, end, [&](int64_t b, int64_t e, int64_t c) {
      forward_any(make_op(c), xp + b, op + b, e - b);
    });
  });
  return out;
}

// Writes grad_x and returns the per-channel sums (channel-major, S each).
template <typename T, typename MakeOp>
std::vector<double> fused_backward(const at::Tensor& grad, const at::Tensor& x,
                                   at::Tensor& grad_x, const Layout& l, int64_t S,
                                   MakeOp make_op) {
  TORCH_CHECK(grad.is_contiguous() && grad.sizes() == x.sizes() &&
                  grad.scalar_type() == x.scalar_type(),
              "mmcompress fake-quant kernel: grad must match x (contiguous)");
  const int64_t chunks = (l.numel + kChunk - 1) / kChunk;
  const int64_t width = l.channels * S;
  std::vector<double> partial(static_cast<size_t>(chunks * width), 0.0);
  const T* xp = x.data_ptr<T>();
  const T* gp = grad.data_ptr<T>();
  T* gxp = grad_x.data_ptr<T>();
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t chunk = first; chunk < last; ++chunk) {
      double* sums = partial.data() + chunk * width;
      const int64_t end = std::min(l.numel, (chunk + 1) * kChunk);
      for_runs(l, chunk * kChunk, end, [&](int64_t b, int64_t e, int64_t c) {
        backward_any(make_op(c), xp + b, gp + b, gxp + b, e - b, sums + c * S);
      });
    }
  });
  std::vector<double> total(static_cast<size_t>(width), 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (int64_t i = 0; i < width; ++i) total[i] += partial[chunk * width + i];
  }
  return total;
}

// fn(std::true_type) for weights, fn(std::false_type) for activations.
template <typename F>
void with_role(bool weight, F fn) {
  if (weight) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

}  // namespace mmc
