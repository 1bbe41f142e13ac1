// Fused DAQ and N2UQ quantization on the CPU: one pass forward, one pass
// backward; the shared machinery is in fake_quant_cpu.h.
//
// DAQ (mmcompress/quant/quantizers/daq.py, training path; derivation in
// docs/quant/overhead.md): x_s = (x - mean) / std (weights; detached), far
//   clamp, u = (x_c - lower) / step, t = clamp(u, 0, L), f = floor(t),
//   r = t - f, k = f + [r > 0.5]; out = (2k - L) / L or k / L. Backward: the
//   soft path's gradient, g_t = g_k (1 + 2c) p1 (1 - p1) beta (s0 + s1) with
//   s0 / s1 the kernel-weighted distance scores exp(-r), exp(r - 1), beta =
//   T / |s0 - s1| and p1 = sigmoid(+-T); sums: g_u / step and the step term.
// N2UQ weights: see N2uqWeightOp.
// N2UQ activations (gste_threshold_quantize): far clamp, x_s = x_c * scale1,
//   q = interval * #{thresholds < x_s}; out = q * scale2. Backward: G-STE
//   through interval * (seg + clamp((x_s - start_seg) / width_seg, 0, 1));
//   sums: scale1, scale2 and per segment start / width.
#include "fake_quant_cpu.h"

#include <limits>

namespace mmc {
namespace {

// The per-call constants of DAQ (the same for every channel).
template <typename T>
struct DaqConsts {
  T mean, std, inv_std, levels;
  T far;  // the Gaussian kernel weight exp(-1 / sigma^2)
  // dk/dt = slope (s0 + s1) / |s0 - s1| times dout/dk (2 / L or 1 / L):
  // slope = (1 + 2c) p (1 - p) T, folded in double
  T weight_slope, act_slope;
};

template <typename T, bool kWeight>
struct DaqOp {
  static constexpr int kSums = 2;
  DaqConsts<T> k;
  T lower, step, inv_step, far_lo, far_hi, pad;

  // u = (x_c - lower) / step for x_c the far-clamped standardized x
  // (activations are not standardized: (x - 0) / 1 is x, -0 and NaN included)
  MMC_INLINE T scaled(T x) const {
    const T x_s = kWeight ? (x - k.mean) / k.std : x;
    const T x_c = clamp_padded(x_s, far_lo, far_hi, pad);
    return (x_c - lower) / step;
  }

  MMC_INLINE T forward(T x) const {
    const T t = clamp(scaled(x), T(0), k.levels);
    const T f = std::floor(t);  // t in [0, L]
    // hard level + (soft - soft): +0 for a finite t
    const T level = (f + (t - f > T(0.5) ? T(1) : T(0))) + T(0);
    return kWeight ? (T(2) * level - k.levels) / k.levels : level / k.levels;
  }

  // The gradient of the eager soft path (daq_soft_round), its constant
  // factors folded and its divisions by step and std taken as products with
  // the reciprocals (a few roundings from the autograd values): with d =
  // s1 - s0, dk/dt = (1 + 2c) p1 (1 - p1) beta (s0 + s1) (|r| and |r - 1|
  // have derivatives +1 and -1: r is in [0, 1) where the mask passes).
  MMC_INLINE void backward(T x, T g, T* gx, T* terms) const {
    const T u = scaled(x);
    const T t = clamp(u, T(0), k.levels);
    const T r = t - std::floor(t);
    const bool up = r > T(0.5);
    const T m0 = exp_unit(-r);
    const T m1 = exp_unit(r - T(1));
    const T s0 = up ? m0 * k.far : m0;
    const T s1 = up ? m1 : m1 * k.far;
    const T slope = kWeight ? k.weight_slope : k.act_slope;
    const T g_t = ((g * slope) * (s0 + s1)) / std::fabs(s0 - s1);
    const T g_u = (u >= T(0)) & (u <= k.levels) ? g_t : T(0);
    const T g_num = g_u * inv_step;
    *gx = kWeight ? g_num * k.inv_std : g_num;
    terms[0] = g_num;
    terms[1] = -g_u * (u * inv_step);
  }
};

// N2UQ weights (N2UQWeightQuantizer): per-channel scale sf (detached),
// m = (2^b - 1) / 2 levels per unit: out = sf (round((clamp(x / sf, -1, 1) +
// 1) m) / m - 1) + (ste - ste) with ste = x / sf (0 for x = +-inf); grad_x =
// g / sf (0 for x = +-inf).
// std::isinf, written so that it vectorizes.
template <typename T>
MMC_INLINE bool is_inf(T x) {
  return std::fabs(x) == std::numeric_limits<T>::infinity();
}

template <typename T>
struct N2uqWeightOp {
  static constexpr int kSums = 0;  // sf is detached
  T sf, m;

  MMC_INLINE T forward(T x) const {
    const T scaled = x / sf;
    const T level = round_even((clamp(scaled, T(-1), T(1)) + T(1)) * m) / m - T(1);
    const T ste = is_inf(x) ? T(0) : scaled;
    return sf * level + (ste - ste);
  }

  MMC_INLINE void backward(T x, T g, T* gx, T*) const {
    *gx = (is_inf(x) ? T(0) : g) / sf;
  }
};

// N2UQ activations: one range for the tensor, n <= kMaxSegments segments.
// simple: finite bounds, scale1, starts (non-decreasing) and interval * n and
// positive finite widths; then x_s is NaN only for a NaN x and bp is finite
// for every other x (its ratio is not NaN, so clamp(ratio, 0, 1) is in
// [0, 1] and |bp| <= |interval| n), so q's bp - bp is NaN for a NaN x_s and
// +0 else: the forward needs the threshold count only.
constexpr int64_t kMaxSegments = 255;

template <typename T>
struct N2uqOp {
  T far_lo, far_hi, pad, scale1, scale2, interval;
  int64_t n;
  const T* starts;
  const T* widths;
  const T* thresholds;
  bool simple;
};

constexpr int64_t kBlock = 256;

// The per-element values of a block of len <= kBlock elements: x_c, x_s, the
// output q (before scale2), the segment (a float index), its start and width
// and the clipped ratio (x_s - start) / width.
template <typename T>
struct N2uqBlock {
  T xc[kBlock], xs[kBlock], q[kBlock], seg[kBlock], start[kBlock],
      width[kBlock], ratio[kBlock];

  // kSorted (a simple op): the segment's start and width are picked while
  // counting; else gathered by the segment index.
  template <bool kSorted>
  MMC_INLINE void compute(const N2uqOp<T>& op, const T* __restrict__ x,
                          int64_t len) {
    T count[kBlock], below[kBlock];
    for (int64_t k = 0; k < len; ++k) {
      xc[k] = clamp_padded(x[k], op.far_lo, op.far_hi, op.pad);
      xs[k] = xc[k] * op.scale1;
      count[k] = T(0);
      below[k] = T(0);
      start[k] = op.starts[0];
    }
    // the number of thresholds below x_s (bucketize, right=False) and of
    // segment starts at or below it (bucketize, right=True): the starts and
    // thresholds are increasing, so with finite starts the segment
    // clamp(below - 1, 0, n - 1) starts at the largest of starts[0] and the
    // starts at or below x_s
    const T none = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < op.n; ++i) {
      const T thr = op.thresholds[i], st = op.starts[i];
      for (int64_t k = 0; k < len; ++k) {
        count[k] += thr < xs[k] ? T(1) : T(0);
        const bool in = st <= xs[k];
        below[k] += in ? T(1) : T(0);
        if constexpr (kSorted) start[k] = std::max(start[k], in ? st : none);
      }
    }
    const T last = T(op.n - 1);
    const T last_start = op.starts[op.n - 1];
    for (int64_t k = 0; k < len; ++k) {
      // the segment: clamp(below - 1, 0, n - 1); bucketize puts NaN last
      const bool nan = xs[k] != xs[k];
      seg[k] = nan ? last : clamp(below[k] - T(1), T(0), last);
      const int32_t index = int32_t(seg[k]);  // 32-bit: vector gathers
      if constexpr (kSorted) {
        start[k] = nan ? last_start : start[k];
      } else {
        start[k] = op.starts[index];
      }
      width[k] = op.widths[index];
      ratio[k] = (xs[k] - start[k]) / width[k];
      // the G-STE path bp = interval (seg + clamp(ratio, 0, 1)); q adds
      // bp - bp (NaN where bp is not finite)
      const T bp = op.interval * (seg[k] + clamp(ratio[k], T(0), T(1)));
      q[k] = count[k] * op.interval + (bp - bp);
    }
  }
};

// The forward of a simple op (see N2uqOp): the count of thresholds below x_s
// only, and + 0 (NaN for a NaN x_s) in place of bp - bp.
template <typename T>
MMC_INLINE void n2uq_simple_forward_block(const N2uqOp<T>& op,
                                          const T* __restrict__ x,
                                          T* __restrict__ out, int64_t len) {
  T xs[kBlock], count[kBlock];
  for (int64_t k = 0; k < len; ++k) {
    xs[k] = clamp_padded(x[k], op.far_lo, op.far_hi, op.pad) * op.scale1;
    count[k] = T(0);
  }
  for (int64_t i = 0; i < op.n; ++i) {
    const T thr = op.thresholds[i];
    for (int64_t k = 0; k < len; ++k) count[k] += thr < xs[k] ? T(1) : T(0);
  }
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t k = 0; k < len; ++k) {
    const T zero = xs[k] != xs[k] ? nan : T(0);
    out[k] = (count[k] * op.interval + zero) * op.scale2;
  }
}

template <typename T>
MMC_INLINE void n2uq_forward_run(const N2uqOp<T>& op_ref,
                                 const T* __restrict__ x, T* __restrict__ out,
                                 int64_t n) {
  const N2uqOp<T> op = op_ref;
  if (op.simple) {
    for (int64_t begin = 0; begin < n; begin += kBlock) {
      n2uq_simple_forward_block(op, x + begin, out + begin,
                                std::min(kBlock, n - begin));
    }
    return;
  }
  N2uqBlock<T> b;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    b.template compute<false>(op, x + begin, len);
    for (int64_t k = 0; k < len; ++k) out[begin + k] = b.q[k] * op.scale2;
  }
}

// Per-segment sums of a run: kCopies interleaved copies (element k adds to
// copy k % kCopies), so that runs of elements in one segment do not wait on
// each other's additions; added in a fixed order at the end.
constexpr int kCopies = 4;

struct SegmentSums {
  double starts[kCopies][kMaxSegments], widths[kCopies][kMaxSegments];

  explicit SegmentSums(int64_t n) {
    for (int c = 0; c < kCopies; ++c) {
      std::fill_n(starts[c], n, 0.0);
      std::fill_n(widths[c], n, 0.0);
    }
  }

  void add_to(double* seg_starts, double* seg_widths, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      for (int c = 0; c < kCopies; ++c) {
        seg_starts[i] += starts[c][i];
        seg_widths[i] += widths[c][i];
      }
    }
  }
};

// sums: scale1, scale2, the n segment starts, the n widths.
template <typename T>
MMC_INLINE void n2uq_backward_run(const N2uqOp<T>& op_ref,
                                  const T* __restrict__ x,
                                  const T* __restrict__ g, T* __restrict__ gx,
                                  int64_t n, double* sums) {
  const N2uqOp<T> op = op_ref;
  N2uqBlock<T> b;
  T g_start[kBlock], g_width[kBlock], g_scale1[kBlock], g_scale2[kBlock];
  SegmentSums seg_sums(op.n);
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    if (op.simple) {
      b.template compute<true>(op, x + begin, len);
    } else {
      b.template compute<false>(op, x + begin, len);
    }
    const T* gb = g + begin;
    for (int64_t k = 0; k < len; ++k) {
      const T g_q = gb[k] * op.scale2;
      const T g_a = g_q * op.interval;
      const T r = b.ratio[k];
      const T g_ratio = (r >= T(0)) & (r <= T(1)) ? g_a : T(0);
      const T g_num = g_ratio / b.width[k];
      g_width[k] = -g_ratio * (r / b.width[k]);
      g_start[k] = -g_num;
      gx[begin + k] = g_num * op.scale1;
      g_scale1[k] = g_num * b.xc[k];
      g_scale2[k] = gb[k] * b.q[k];
    }
    double lanes1[kLanes] = {}, lanes2[kLanes] = {};
    int64_t k = 0;
    for (; k + kLanes <= len; k += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        lanes1[j] += double(g_scale1[k + j]);
        lanes2[j] += double(g_scale2[k + j]);
      }
    }
    for (; k < len; ++k) {
      sums[0] += double(g_scale1[k]);
      sums[1] += double(g_scale2[k]);
    }
    for (int j = 0; j < kLanes; ++j) {
      sums[0] += lanes1[j];
      sums[1] += lanes2[j];
    }
    for (int64_t k = 0; k < len; ++k) {
      const int64_t seg = int64_t(b.seg[k]);
      seg_sums.starts[k % kCopies][seg] += double(g_start[k]);
      seg_sums.widths[k % kCopies][seg] += double(g_width[k]);
    }
  }
  seg_sums.add_to(sums + 2, sums + 2 + op.n, op.n);
}

using DaqWeightF = DaqOp<float, true>;
using DaqActF = DaqOp<float, false>;
using DaqWeightD = DaqOp<double, true>;
using DaqActD = DaqOp<double, false>;
using N2uqWeightF = N2uqWeightOp<float>;
using N2uqWeightD = N2uqWeightOp<double>;
MMC_ENTRIES(DaqWeightF, float)
MMC_ENTRIES(DaqActF, float)
MMC_ENTRIES(DaqWeightD, double)
MMC_ENTRIES(DaqActD, double)
MMC_ENTRIES(N2uqWeightF, float)
MMC_ENTRIES(N2uqWeightD, double)
#undef MMC_ENTRIES
#define MMC_N2UQ_ENTRIES(T)                                                  \
  MMC_CLONES void forward_any(const N2uqOp<T>& op, const T* x, T* o,         \
                              int64_t n) {                                   \
    n2uq_forward_run(op, x, o, n);                                           \
  }                                                                          \
  MMC_CLONES void backward_any(const N2uqOp<T>& op, const T* x, const T* g,  \
                               T* gx, int64_t n, double* sums) {             \
    n2uq_backward_run(op, x, g, gx, n, sums);                                \
  }
MMC_N2UQ_ENTRIES(float)
MMC_N2UQ_ENTRIES(double)
#undef MMC_N2UQ_ENTRIES


template <typename T>
DaqConsts<T> daq_consts(const at::Tensor& norm, int64_t levels,
                        double temperature, double sigma, bool weight) {
  TORCH_CHECK(norm.numel() == 2 && norm.is_contiguous() &&
                  norm.scalar_type() == c10::CppTypeToScalarType<T>::value,
              "mmcompress DAQ kernel: norm must hold (mean, std)");
  const T* np = norm.data_ptr<T>();
  TORCH_CHECK(weight || (np[0] == T(0) && np[1] == T(1)),
              "mmcompress DAQ kernel: activations are not standardized "
              "(norm must be (0, 1))");
  const double c = 1.0 / std::expm1(temperature);
  // p (1 - p) for p = sigmoid(T), as sigmoid(T) sigmoid(-T)
  const double p_q =
      1.0 / ((1.0 + std::exp(-temperature)) * (1.0 + std::exp(temperature)));
  const double slope = (1.0 + 2.0 * c) * p_q * temperature / double(levels);
  return DaqConsts<T>{np[0],
                      np[1],
                      T(1.0 / double(np[1])),
                      T(levels),
                      T(std::exp(-1.0 / (sigma * sigma))),
                      T(2.0 * slope),
                      T(slope)};
}

template <typename T, bool kWeight>
DaqOp<T, kWeight> daq_op(const DaqConsts<T>& k, T lower, T upper, T step) {
  const T w = std::fabs(upper - lower);  // clamp_far_outside's bounds
  const T lo = std::min(lower, upper) - w, hi = std::max(lower, upper) + w;
  return DaqOp<T, kWeight>{k, lower, step, T(1.0 / double(step)), lo, hi,
                           far_pad(lo, hi)};
}

void check_params(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.sizes() == b.sizes() && b.is_contiguous() &&
                  b.scalar_type() == a.scalar_type(),
              "mmcompress kernel: ", what, " must match");
}

at::Tensor daq_forward(const at::Tensor& x, const at::Tensor& lower,
                       const at::Tensor& upper, const at::Tensor& step,
                       const at::Tensor& norm, int64_t levels, double temperature,
                       double sigma, bool weight, int64_t axis) {
  const Layout l = layout_of(x, lower, axis);
  check_params(lower, upper, "DAQ lower and upper");
  check_params(lower, step, "DAQ lower and step");
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_daq_forward", [&] {
    const auto k = daq_consts<scalar_t>(norm, levels, temperature, sigma, weight);
    const scalar_t* lp = lower.data_ptr<scalar_t>();
    const scalar_t* up = upper.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    with_role(weight, [&](auto role) {
      out = fused_forward<scalar_t>(x, l, [&](int64_t c) {
        return daq_op<scalar_t, role.value>(k, lp[c], up[c], sp[c]);
      });
    });
  });
  return out;
}

// Returns (grad_x, grad_lower, grad_step): the gradients of lower and step
// through (x_c - lower) / step only (step's own dependence on lower and upper
// stays with autograd).
std::tuple<at::Tensor, at::Tensor, at::Tensor> daq_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& lower,
    const at::Tensor& upper, const at::Tensor& step, const at::Tensor& norm,
    int64_t levels, double temperature, double sigma, bool weight, int64_t axis) {
  const Layout l = layout_of(x, lower, axis);
  check_params(lower, upper, "DAQ lower and upper");
  check_params(lower, step, "DAQ lower and step");
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_lower = at::empty({l.channels}, lower.options());
  at::Tensor grad_step = at::empty({l.channels}, lower.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_daq_backward", [&] {
    const auto k = daq_consts<scalar_t>(norm, levels, temperature, sigma, weight);
    const scalar_t* lp = lower.data_ptr<scalar_t>();
    const scalar_t* up = upper.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    std::vector<double> sums;
    with_role(weight, [&](auto role) {
      sums = fused_backward<scalar_t>(grad, x, grad_x, l, 2, [&](int64_t c) {
        return daq_op<scalar_t, role.value>(k, lp[c], up[c], sp[c]);
      });
    });
    scalar_t* gl = grad_lower.data_ptr<scalar_t>();
    scalar_t* gs = grad_step.data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.channels; ++c) {
      gl[c] = scalar_t(-sums[2 * c]);
      gs[c] = scalar_t(sums[2 * c + 1]);
    }
  });
  return {grad_x, grad_lower, grad_step};
}

// bounds: (low, high) of the segments in x's units, before the far clamp;
// scales: (scale1, scale2); starts, widths, thresholds: the n segments.
template <typename T>
N2uqOp<T> n2uq_op(const at::Tensor& bounds, const at::Tensor& scales,
                  const at::Tensor& starts, const at::Tensor& widths,
                  const at::Tensor& thresholds, double interval) {
  for (const at::Tensor* t : {&bounds, &scales, &starts, &widths, &thresholds}) {
    TORCH_CHECK(t->is_contiguous() && t->dim() == 1 &&
                    t->scalar_type() == c10::CppTypeToScalarType<T>::value,
                "mmcompress N2UQ kernel: parameters must be contiguous 1-D "
                "tensors of the dtype of x");
  }
  const int64_t n = starts.numel();
  TORCH_CHECK(bounds.numel() == 2 && scales.numel() == 2 && n >= 1 &&
                  n <= kMaxSegments && widths.numel() == n &&
                  thresholds.numel() == n,
              "mmcompress N2UQ kernel: wrong parameter sizes");
  const T* b = bounds.data_ptr<T>();
  const T* s = scales.data_ptr<T>();
  const T w = std::fabs(b[1] - b[0]);  // clamp_far_outside's bounds
  const T lo = std::min(b[0], b[1]) - w, hi = std::max(b[0], b[1]) + w;
  const T* sp = starts.data_ptr<T>();
  const T* wp = widths.data_ptr<T>();
  bool simple = std::isfinite(lo) && std::isfinite(hi) && std::isfinite(s[0]) &&
                std::isfinite(T(interval) * T(n));
  for (int64_t i = 0; i < n; ++i) {
    simple = simple && std::isfinite(sp[i]) && std::isfinite(wp[i]) &&
             wp[i] > T(0) && (i == 0 || sp[i - 1] <= sp[i]);
  }
  return N2uqOp<T>{lo,
                   hi,
                   far_pad(lo, hi),
                   s[0],
                   s[1],
                   T(interval),
                   n,
                   sp,
                   wp,
                   thresholds.data_ptr<T>(),
                   simple};
}

at::Tensor n2uq_forward(const at::Tensor& x, const at::Tensor& bounds,
                        const at::Tensor& scales, const at::Tensor& starts,
                        const at::Tensor& widths, const at::Tensor& thresholds,
                        double interval) {
  const Layout l = layout_of(x, scales.narrow(0, 0, 1), 0);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_n2uq_forward", [&] {
    const auto op =
        n2uq_op<scalar_t>(bounds, scales, starts, widths, thresholds, interval);
    out = fused_forward<scalar_t>(x, l, [&](int64_t) { return op; });
  });
  return out;
}

// Returns (grad_x, grad_scales, grad_starts, grad_widths).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> n2uq_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& bounds,
    const at::Tensor& scales, const at::Tensor& starts, const at::Tensor& widths,
    const at::Tensor& thresholds, double interval) {
  const Layout l = layout_of(x, scales.narrow(0, 0, 1), 0);
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_scales = at::empty_like(scales);
  at::Tensor grad_starts = at::empty_like(starts);
  at::Tensor grad_widths = at::empty_like(widths);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_n2uq_backward", [&] {
    const auto op =
        n2uq_op<scalar_t>(bounds, scales, starts, widths, thresholds, interval);
    const auto sums = fused_backward<scalar_t>(
        grad, x, grad_x, l, 2 + 2 * op.n, [&](int64_t) { return op; });
    scalar_t* gs = grad_scales.data_ptr<scalar_t>();
    scalar_t* gst = grad_starts.data_ptr<scalar_t>();
    scalar_t* gw = grad_widths.data_ptr<scalar_t>();
    gs[0] = scalar_t(sums[0]);
    gs[1] = scalar_t(sums[1]);
    for (int64_t i = 0; i < op.n; ++i) {
      gst[i] = scalar_t(sums[2 + i]);
      gw[i] = scalar_t(sums[2 + op.n + i]);
    }
  });
  return {grad_x, grad_scales, grad_starts, grad_widths};
}

at::Tensor n2uq_weight_forward(const at::Tensor& x, const at::Tensor& scale,
                               double m, int64_t axis) {
  const Layout l = layout_of(x, scale, axis);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_n2uq_weight_forward", [&] {
    const scalar_t* sp = scale.data_ptr<scalar_t>();
    out = fused_forward<scalar_t>(x, l, [&](int64_t c) {
      return N2uqWeightOp<scalar_t>{sp[c], scalar_t(m)};
    });
  });
  return out;
}

at::Tensor n2uq_weight_backward(const at::Tensor& grad, const at::Tensor& x,
                                const at::Tensor& scale, double m, int64_t axis) {
  const Layout l = layout_of(x, scale, axis);
  at::Tensor grad_x = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_n2uq_weight_backward", [&] {
    const scalar_t* sp = scale.data_ptr<scalar_t>();
    fused_backward<scalar_t>(grad, x, grad_x, l, 0, [&](int64_t c) {
      return N2uqWeightOp<scalar_t>{sp[c], scalar_t(m)};
    });
  });
  return grad_x;
}

}  // namespace
}  // namespace mmc

using namespace mmc;

TORCH_LIBRARY_FRAGMENT(mmcompress_kernels, m) {
  m.def(
      "daq_forward(Tensor x, Tensor lower, Tensor upper, Tensor step, Tensor norm, "
      "int levels, float temperature, float sigma, bool weight, int axis) -> Tensor");
  m.def(
      "daq_backward(Tensor grad, Tensor x, Tensor lower, Tensor upper, Tensor step, "
      "Tensor norm, int levels, float temperature, float sigma, bool weight, "
      "int axis) -> (Tensor, Tensor, Tensor)");
  m.def(
      "n2uq_forward(Tensor x, Tensor bounds, Tensor scales, Tensor starts, "
      "Tensor widths, Tensor thresholds, float interval) -> Tensor");
  m.def(
      "n2uq_backward(Tensor grad, Tensor x, Tensor bounds, Tensor scales, "
      "Tensor starts, Tensor widths, Tensor thresholds, float interval) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
  m.def("n2uq_weight_forward(Tensor x, Tensor scale, float m, int axis) -> Tensor");
  m.def(
      "n2uq_weight_backward(Tensor grad, Tensor x, Tensor scale, float m, int axis) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(mmcompress_kernels, CPU, m) {
  m.impl("daq_forward", &daq_forward);
  m.impl("daq_backward", &daq_backward);
  m.impl("n2uq_forward", &n2uq_forward);
  m.impl("n2uq_backward", &n2uq_backward);
  m.impl("n2uq_weight_forward", &n2uq_weight_forward);
  m.impl("n2uq_weight_backward", &n2uq_weight_backward);
}
