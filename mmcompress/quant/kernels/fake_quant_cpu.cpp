// Fused fake quantization on the CPU: one pass forward, one pass backward.
//
// x is seen as (outer, C, inner) with one set of range parameters per channel
// c (C = 1: one set for the whole tensor). The backward recomputes the
// forward's intermediate values from x (the same operations in the same
// order, so the same values) and writes the input gradient and per-channel
// sums of the parameter-gradient terms. The sums are taken in double per
// fixed-size chunk and the chunks are added in order, so they do not depend on
// the number of threads.
//
// LSQ (step s, integer range [qmin, qmax]):
//   forward  out = clamp(round(x / s), qmin, qmax) * s
//   backward grad_x = g * [qmin <= x/s <= qmax]
//            sum_s  = sum of g * (inside ? level - x/s : level)
// EWGS (lower, upper, L - 1 levels, delta; mmcompress/quant/quantizers/ewgs.py):
//   forward  x_c = clamp(x, min(lower, upper) - w, max(lower, upper) + w)
//            y = (x_c - lower) / (upper - lower), x_n = clamp(y, 0, 1)
//            x_q = round(x_n * (L - 1)) / (L - 1); out = 2 x_q - 1 or x_q
//   backward g_q = 2 g (weights) or g, g_n = g_q * (1 + delta sign(g_q) (x_n - x_q))
//            g_y = [0 <= y <= 1] g_n, grad_x = g_y / b (b = upper - lower)
//            sums: grad_x and -g_y * (y / b) (the division's two gradients)
// Rounding is to nearest, ties to even, as torch.round.
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

namespace {

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

template <typename T>
struct LsqOp {
  static constexpr int kSums = 1;
  T s, lo, hi;

  MMC_INLINE T forward(T x) const { return clamp(round_even(x / s), lo, hi) * s; }

  MMC_INLINE void backward(T x, T g, T* gx, T* terms) const {
    const T v = x / s;
    const bool inside = (v >= lo) & (v <= hi);
    const T level = clamp(round_even(v), lo, hi);
    *gx = g * (inside ? T(1) : T(0));
    terms[0] = g * (inside ? level - v : level);
  }
};

template <typename T, bool kWeight>
struct EwgsOp {
  static constexpr int kSums = 2;
  T lower, span, far_lo, far_hi, levels, delta;

  MMC_INLINE T normalized(T x) const {
    return (clamp(x, far_lo, far_hi) - lower) / span;
  }

  MMC_INLINE T discretized(T x_n) const { return round_even(x_n * levels) / levels; }

  MMC_INLINE T forward(T x) const {
    const T x_q = discretized(clamp(normalized(x), T(0), T(1)));
    return kWeight ? T(2) * x_q - T(1) : x_q;
  }

  MMC_INLINE void backward(T x, T g, T* gx, T* terms) const {
    const T y = normalized(x);
    const T x_n = clamp(y, T(0), T(1));
    const T x_q = discretized(x_n);
    const T g_q = kWeight ? g * T(2) : g;
    const T sign = (g_q > T(0) ? T(1) : T(0)) - (g_q < T(0) ? T(1) : T(0));
    const T g_n = g_q * (T(1) + delta * sign * (x_n - x_q));
    const T g_y = (y >= T(0)) & (y <= T(1)) ? g_n : T(0);
    *gx = g_y / span;
    terms[0] = *gx;
    terms[1] = -g_y * (y / span);
  }
};

// The loops copy the op into a local, so the compiler knows the output
// stores do not change it.
template <typename Op, typename T>
MMC_INLINE void forward_run(const Op& op_ref, const T* __restrict__ x,
                            T* __restrict__ out, int64_t n) {
  const Op op = op_ref;
  for (int64_t k = 0; k < n; ++k) out[k] = op.forward(x[k]);
}

// Writes the input gradient of one run and adds its parameter-gradient terms
// to sums, accumulated in double (kLanes lanes, so the loop vectorizes).
template <typename Op, typename T>
MMC_INLINE void backward_run(const Op& op_ref, const T* __restrict__ x,
                             const T* __restrict__ g, T* __restrict__ gx,
                             int64_t n, double* sums) {
  constexpr int S = Op::kSums;
  const Op op = op_ref;
  double lanes0[kLanes] = {}, lanes1[kLanes] = {};
  T t[2];
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
using EwgsWeightF = EwgsOp<float, true>;
using EwgsActF = EwgsOp<float, false>;
using EwgsWeightD = EwgsOp<double, true>;
using EwgsActD = EwgsOp<double, false>;
MMC_ENTRIES(LsqOp<float>, float)
MMC_ENTRIES(LsqOp<double>, double)
MMC_ENTRIES(EwgsWeightF, float)
MMC_ENTRIES(EwgsActF, float)
MMC_ENTRIES(EwgsWeightD, double)
MMC_ENTRIES(EwgsActD, double)
#undef MMC_ENTRIES

struct Layout {
  int64_t numel, channels, inner;
};

// The (outer, C, inner) view of x for per-channel parameters of length C
// along axis (C = 1: per tensor).
Layout layout_of(const at::Tensor& x, const at::Tensor& param, int64_t axis) {
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

// Writes grad_x and returns the per-channel sums (channel-major, kSums each).
template <typename T, int S, typename MakeOp>
std::vector<double> fused_backward(const at::Tensor& grad, const at::Tensor& x,
                                   at::Tensor& grad_x, const Layout& l,
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

at::Tensor lsq_forward(const at::Tensor& x, const at::Tensor& step,
                       int64_t qmin, int64_t qmax, int64_t axis) {
  const Layout l = layout_of(x, step, axis);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_lsq_forward", [&] {
    const scalar_t* sp = step.data_ptr<scalar_t>();
    out = fused_forward<scalar_t>(x, l, [&](int64_t c) {
      return LsqOp<scalar_t>{sp[c], scalar_t(qmin), scalar_t(qmax)};
    });
  });
  return out;
}

// Returns (grad_x, sum_s): sum_s is the per-channel sum, not yet times the
// LSQ gradient scale, in the dtype of x.
std::tuple<at::Tensor, at::Tensor> lsq_backward(const at::Tensor& grad,
                                                const at::Tensor& x,
                                                const at::Tensor& step,
                                                int64_t qmin, int64_t qmax,
                                                int64_t axis) {
  const Layout l = layout_of(x, step, axis);
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_step = at::empty({l.channels}, step.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_lsq_backward", [&] {
    const scalar_t* sp = step.data_ptr<scalar_t>();
    const auto sums = fused_backward<scalar_t, 1>(grad, x, grad_x, l, [&](int64_t c) {
      return LsqOp<scalar_t>{sp[c], scalar_t(qmin), scalar_t(qmax)};
    });
    scalar_t* out = grad_step.data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.channels; ++c) out[c] = scalar_t(sums[c]);
  });
  return {grad_x, grad_step};
}

template <typename T, bool kWeight>
EwgsOp<T, kWeight> ewgs_op(T lower, T upper, int64_t levels, double delta) {
  // clamp_far_outside's bounds, as in mmcompress/quant/functions.py
  const T w = std::fabs(upper - lower);
  return EwgsOp<T, kWeight>{lower,
                            upper - lower,
                            std::min(lower, upper) - w,
                            std::max(lower, upper) + w,
                            T(levels - 1),
                            T(delta)};
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

void check_ewgs(const at::Tensor& lower, const at::Tensor& upper) {
  TORCH_CHECK(lower.sizes() == upper.sizes() && upper.is_contiguous() &&
                  upper.scalar_type() == lower.scalar_type(),
              "mmcompress EWGS kernel: lower and upper must match");
}

at::Tensor ewgs_forward(const at::Tensor& x, const at::Tensor& lower,
                        const at::Tensor& upper, int64_t levels, bool weight,
                        int64_t axis) {
  const Layout l = layout_of(x, lower, axis);
  check_ewgs(lower, upper);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_ewgs_forward", [&] {
    const scalar_t* lp = lower.data_ptr<scalar_t>();
    const scalar_t* up = upper.data_ptr<scalar_t>();
    with_role(weight, [&](auto role) {
      out = fused_forward<scalar_t>(x, l, [&](int64_t c) {
        return ewgs_op<scalar_t, role.value>(lp[c], up[c], levels, 0.0);
      });
    });
  });
  return out;
}

// Returns (grad_x, grad_lower, grad_upper).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ewgs_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& lower,
    const at::Tensor& upper, double delta, int64_t levels, bool weight,
    int64_t axis) {
  const Layout l = layout_of(x, lower, axis);
  check_ewgs(lower, upper);
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_lower = at::empty({l.channels}, lower.options());
  at::Tensor grad_upper = at::empty({l.channels}, lower.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_ewgs_backward", [&] {
    const scalar_t* lp = lower.data_ptr<scalar_t>();
    const scalar_t* up = upper.data_ptr<scalar_t>();
    std::vector<double> sums;
    with_role(weight, [&](auto role) {
      sums = fused_backward<scalar_t, 2>(grad, x, grad_x, l, [&](int64_t c) {
        return ewgs_op<scalar_t, role.value>(lp[c], up[c], levels, delta);
      });
    });
    scalar_t* gl = grad_lower.data_ptr<scalar_t>();
    scalar_t* gu = grad_upper.data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.channels; ++c) {
      // x - lower gives -grad_x to lower; upper - lower gives -/+ the
      // division's gradient for its denominator to lower / upper
      gl[c] = scalar_t(-sums[2 * c] - sums[2 * c + 1]);
      gu[c] = scalar_t(sums[2 * c + 1]);
    }
  });
  return {grad_x, grad_lower, grad_upper};
}

}  // namespace

TORCH_LIBRARY(mmcompress_kernels, m) {
  m.def("lsq_forward(Tensor x, Tensor step, int qmin, int qmax, int axis) -> Tensor");
  m.def(
      "lsq_backward(Tensor grad, Tensor x, Tensor step, int qmin, int qmax, "
      "int axis) -> (Tensor, Tensor)");
  m.def(
      "ewgs_forward(Tensor x, Tensor lower, Tensor upper, int levels, "
      "bool weight, int axis) -> Tensor");
  m.def(
      "ewgs_backward(Tensor grad, Tensor x, Tensor lower, Tensor upper, "
      "float delta, int levels, bool weight, int axis) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmcompress_kernels, CPU, m) {
  m.impl("lsq_forward", &lsq_forward);
  m.impl("lsq_backward", &lsq_backward);
  m.impl("ewgs_forward", &ewgs_forward);
  m.impl("ewgs_backward", &ewgs_backward);
}
