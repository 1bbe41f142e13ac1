// Fused fake quantization on the CPU (LSQ, EWGS): one pass forward, one
// pass backward; the shared machinery is in fake_quant_cpu.h.
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
#include "fake_quant_cpu.h"

namespace mmc {
namespace {

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
    const auto sums = fused_backward<scalar_t>(grad, x, grad_x, l, 1, [&](int64_t c) {
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
    const at::Tensor& upper, const at::Tensor& delta_tensor, int64_t levels,
    bool weight, int64_t axis) {
  const Layout l = layout_of(x, lower, axis);
  check_ewgs(lower, upper);
  // a tensor (not a float argument), so that torch.compile traces the
  // quantizer's delta buffer into the graph instead of breaking it
  TORCH_CHECK(delta_tensor.numel() == 1 && delta_tensor.device().is_cpu(),
              "mmcompress EWGS kernel: delta must be one CPU value");
  const double delta = delta_tensor.item<double>();
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_lower = at::empty({l.channels}, lower.options());
  at::Tensor grad_upper = at::empty({l.channels}, lower.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_ewgs_backward", [&] {
    const scalar_t* lp = lower.data_ptr<scalar_t>();
    const scalar_t* up = upper.data_ptr<scalar_t>();
    std::vector<double> sums;
    with_role(weight, [&](auto role) {
      sums = fused_backward<scalar_t>(grad, x, grad_x, l, 2, [&](int64_t c) {
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
}  // namespace mmc

using namespace mmc;

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
      "Tensor delta, int levels, bool weight, int axis) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmcompress_kernels, CPU, m) {
  m.impl("lsq_forward", &lsq_forward);
  m.impl("lsq_backward", &lsq_backward);
  m.impl("ewgs_forward", &ewgs_forward);
  m.impl("ewgs_backward", &ewgs_backward);
}
