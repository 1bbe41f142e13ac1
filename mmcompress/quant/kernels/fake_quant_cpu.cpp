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
// Rounding is to nearest, ties to even, as torch.round. Built with
// -ffp-contract=off (no fused multiply-add: the eager values bit for bit) and
// -fno-trapping-math (floor and conditional arithmetic vectorize; no value
// changes).
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

// The per-call constants of DAQ (the same for every channel).
template <typename T>
struct DaqConsts {
  T mean, std, levels;
  T temperature, far;  // T and the Gaussian kernel weight exp(-1 / sigma^2)
  T one_plus_c, c;     // the soft output's coefficients 1 + c and c
  T p_up, p_down;      // sigmoid(T), sigmoid(-T): p1 when r > 0.5 / r <= 0.5
};

template <typename T, bool kWeight>
struct DaqOp {
  static constexpr int kSums = 2;
  DaqConsts<T> k;
  T lower, step, far_lo, far_hi, pad;

  // u = (x_c - lower) / step for x_c the far-clamped standardized x
  MMC_INLINE T scaled(T x) const {
    const T x_c = clamp_padded((x - k.mean) / k.std, far_lo, far_hi, pad);
    return (x_c - lower) / step;
  }

  MMC_INLINE T forward(T x) const {
    const T t = clamp(scaled(x), T(0), k.levels);
    const T f = std::floor(t);  // t in [0, L]
    // hard level + (soft - soft): +0 for a finite t
    const T level = (f + (t - f > T(0.5) ? T(1) : T(0))) + T(0);
    return kWeight ? (T(2) * level - k.levels) / k.levels : level / k.levels;
  }

  // The autograd steps of the eager soft path in its order (daq_soft_round).
  MMC_INLINE void backward(T x, T g, T* gx, T* terms) const {
    const T u = scaled(x);
    const T t = clamp(u, T(0), k.levels);
    const T r = t - std::floor(t);
    const bool up = r > T(0.5);
    const T m0 = exp_unit(-r);
    const T m1 = exp_unit(r - T(1));
    const T far0 = up ? k.far : T(1), far1 = up ? T(1) : k.far;
    const T s0 = m0 * far0;
    const T s1 = m1 * far1;
    const T beta = k.temperature / std::fabs(s0 - s1);
    const T p1 = up ? k.p_up : k.p_down;
    const T g_k = kWeight ? (g / k.levels) * T(2) : g / k.levels;
    const T g_p1 = g_k * k.one_plus_c + g_k * k.c;
    const T g_d = ((g_p1 * (T(1) - p1)) * p1) * beta;  // d = s1 - s0
    const T g_m0 = -g_d * far0;
    const T g_m1 = g_d * far1;
    // |r| and |r - 1| with the sign-one-at-zero derivative: r >= 0 > r - 1
    const T sign0 = r >= T(0) ? T(1) : T(-1);
    const T g_t = -(g_m0 * m0) * sign0 + (g_m1 * m1);
    const T g_u = (u >= T(0)) & (u <= k.levels) ? g_t : T(0);
    const T g_num = g_u / step;
    *gx = g_num / k.std;
    terms[0] = g_num;
    terms[1] = -g_u * (u / step);
  }
};

// N2UQ weights (N2UQWeightQuantizer): per-channel scale sf (detached),
// m = (2^b - 1) / 2 levels per unit: out = sf (round((clamp(x / sf, -1, 1) +
// 1) m) / m - 1) + (ste - ste) with ste = x / sf (0 for x = +-inf); grad_x =
// g / sf (0 for x = +-inf).
template <typename T>
struct N2uqWeightOp {
  static constexpr int kSums = 1;
  T sf, m;

  MMC_INLINE T forward(T x) const {
    const T scaled = x / sf;
    const T level = round_even((clamp(scaled, T(-1), T(1)) + T(1)) * m) / m - T(1);
    const T ste = std::isinf(x) ? T(0) : scaled;
    return sf * level + (ste - ste);
  }

  MMC_INLINE void backward(T x, T g, T* gx, T* terms) const {
    *gx = (std::isinf(x) ? T(0) : g) / sf;
    terms[0] = T(0);
  }
};

// N2UQ activations: one range for the tensor, n segments.
template <typename T>
struct N2uqOp {
  T far_lo, far_hi, pad, scale1, scale2, interval;
  int64_t n;
  const T* starts;
  const T* widths;
  const T* thresholds;
};

constexpr int64_t kBlock = 256;

// The per-element values of a block of len <= kBlock elements: x_c, x_s, the
// output q (before scale2), the segment (a float index), its start and width
// and the clipped ratio (x_s - start) / width.
template <typename T>
struct N2uqBlock {
  T xc[kBlock], xs[kBlock], q[kBlock], seg[kBlock], start[kBlock],
      width[kBlock], ratio[kBlock];

  MMC_INLINE void compute(const N2uqOp<T>& op, const T* __restrict__ x,
                          int64_t len) {
    T count[kBlock], below[kBlock];
    for (int64_t k = 0; k < len; ++k) {
      xc[k] = clamp_padded(x[k], op.far_lo, op.far_hi, op.pad);
      xs[k] = xc[k] * op.scale1;
      count[k] = T(0);
      below[k] = T(0);
    }
    // the number of thresholds below x_s (bucketize, right=False) and of
    // segment starts at or below it (bucketize, right=True): the starts and
    // thresholds are increasing
    for (int64_t i = 0; i < op.n; ++i) {
      const T thr = op.thresholds[i], st = op.starts[i];
      for (int64_t k = 0; k < len; ++k) {
        count[k] += thr < xs[k] ? T(1) : T(0);
        below[k] += st <= xs[k] ? T(1) : T(0);
      }
    }
    const T last = T(op.n - 1);
    for (int64_t k = 0; k < len; ++k) {
      // the segment: clamp(below - 1, 0, n - 1); bucketize puts NaN last
      seg[k] = xs[k] != xs[k] ? last : clamp(below[k] - T(1), T(0), last);
      const int32_t index = int32_t(seg[k]);  // 32-bit: vector gathers
      start[k] = op.starts[index];
      width[k] = op.widths[index];
      ratio[k] = (xs[k] - start[k]) / width[k];
      // the G-STE path bp = interval (seg + clamp(ratio, 0, 1)); q adds
      // bp - bp (NaN where bp is not finite)
      const T bp = op.interval * (seg[k] + clamp(ratio[k], T(0), T(1)));
      q[k] = count[k] * op.interval + (bp - bp);
    }
  }
};

template <typename T>
MMC_INLINE void n2uq_forward_run(const N2uqOp<T>& op_ref,
                                 const T* __restrict__ x, T* __restrict__ out,
                                 int64_t n) {
  const N2uqOp<T> op = op_ref;
  N2uqBlock<T> b;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    b.compute(op, x + begin, len);
    for (int64_t k = 0; k < len; ++k) out[begin + k] = b.q[k] * op.scale2;
  }
}

// sums: scale1, scale2, the n segment starts, the n widths.
template <typename T>
MMC_INLINE void n2uq_backward_run(const N2uqOp<T>& op_ref,
                                  const T* __restrict__ x,
                                  const T* __restrict__ g, T* __restrict__ gx,
                                  int64_t n, double* sums) {
  const N2uqOp<T> op = op_ref;
  N2uqBlock<T> b;
  T g_start[kBlock], g_width[kBlock], g_scale1[kBlock], g_scale2[kBlock];
  double* seg_starts = sums + 2;
  double* seg_widths = sums + 2 + op.n;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    b.compute(op, x + begin, len);
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
      seg_starts[seg] += double(g_start[k]);
      seg_widths[seg] += double(g_width[k]);
    }
  }
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
using DaqWeightF = DaqOp<float, true>;
using DaqActF = DaqOp<float, false>;
using DaqWeightD = DaqOp<double, true>;
using DaqActD = DaqOp<double, false>;
using N2uqWeightF = N2uqWeightOp<float>;
using N2uqWeightD = N2uqWeightOp<double>;
MMC_ENTRIES(LsqOp<float>, float)
MMC_ENTRIES(LsqOp<double>, double)
MMC_ENTRIES(EwgsWeightF, float)
MMC_ENTRIES(EwgsActF, float)
MMC_ENTRIES(EwgsWeightD, double)
MMC_ENTRIES(EwgsActD, double)
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

template <typename T>
DaqConsts<T> daq_consts(const at::Tensor& norm, int64_t levels,
                        double temperature, double sigma) {
  TORCH_CHECK(norm.numel() == 2 && norm.is_contiguous() &&
                  norm.scalar_type() == c10::CppTypeToScalarType<T>::value,
              "mmcompress DAQ kernel: norm must hold (mean, std)");
  const T* np = norm.data_ptr<T>();
  const double c = 1.0 / std::expm1(temperature);
  return DaqConsts<T>{np[0],
                      np[1],
                      T(levels),
                      T(temperature),
                      T(std::exp(-1.0 / (sigma * sigma))),
                      T(1.0 + c),
                      T(c),
                      T(1.0 / (1.0 + std::exp(-temperature))),
                      T(1.0 / (1.0 + std::exp(temperature)))};
}

template <typename T, bool kWeight>
DaqOp<T, kWeight> daq_op(const DaqConsts<T>& k, T lower, T upper, T step) {
  const T w = std::fabs(upper - lower);  // clamp_far_outside's bounds
  const T lo = std::min(lower, upper) - w, hi = std::max(lower, upper) + w;
  return DaqOp<T, kWeight>{k, lower, step, lo, hi, far_pad(lo, hi)};
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
    const auto k = daq_consts<scalar_t>(norm, levels, temperature, sigma);
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
    const auto k = daq_consts<scalar_t>(norm, levels, temperature, sigma);
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
                  widths.numel() == n && thresholds.numel() == n,
              "mmcompress N2UQ kernel: wrong parameter sizes");
  const T* b = bounds.data_ptr<T>();
  const T* s = scales.data_ptr<T>();
  const T w = std::fabs(b[1] - b[0]);  // clamp_far_outside's bounds
  const T lo = std::min(b[0], b[1]) - w, hi = std::max(b[0], b[1]) + w;
  return N2uqOp<T>{lo,
                   hi,
                   far_pad(lo, hi),
                   s[0],
                   s[1],
                   T(interval),
                   n,
                   starts.data_ptr<T>(),
                   widths.data_ptr<T>(),
                   thresholds.data_ptr<T>()};
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
    fused_backward<scalar_t>(grad, x, grad_x, l, 1, [&](int64_t c) {
      return N2uqWeightOp<scalar_t>{sp[c], scalar_t(m)};
    });
  });
  return grad_x;
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
  m.impl("lsq_forward", &lsq_forward);
  m.impl("lsq_backward", &lsq_backward);
  m.impl("ewgs_forward", &ewgs_forward);
  m.impl("ewgs_backward", &ewgs_backward);
  m.impl("daq_forward", &daq_forward);
  m.impl("daq_backward", &daq_backward);
  m.impl("n2uq_forward", &n2uq_forward);
  m.impl("n2uq_backward", &n2uq_backward);
  m.impl("n2uq_weight_forward", &n2uq_weight_forward);
  m.impl("n2uq_weight_backward", &n2uq_weight_backward);
}
