// Fused LSQ fake quantization on the CPU: one pass forward, one pass backward.
//
// x is seen as (outer, C, inner) with one step per channel c (C = 1: one step
// for the whole tensor). Forward: out = round(clamp(x / s, qmin, qmax)) * s.
// Backward, recomputing v = x / s (the same division, so the same value):
//   grad_x = g * [qmin <= v <= qmax]
//   grad_s[c] = sum over channel c of g * (inside ? round(v) - v : clamp level)
// The sums are taken in double per fixed-size chunk and the chunks are
// added in order, so the result does not depend on the
// number of threads. Rounding is to nearest, ties to even, as torch.round.
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

// round(v) (ties to even; the sign of a zero kept as torch.round keeps it),
// then clamped to [lo, hi] as torch.clamp (NaN stays NaN). |v| beyond the
// exact range of the rounding trick is clamped to lo or hi afterwards.
template <typename T>
MMC_INLINE T clamp_round(T v, T lo, T hi) {
  T r = std::copysign((std::fabs(v) + kBig<T>) - kBig<T>, v);
  r = r < lo ? lo : r;
  return r > hi ? hi : r;
}

// out[k] = clamp_round(x[k] / s) * s over one run of a channel.
template <typename T>
MMC_INLINE void forward_run(const T* x, T* out, int64_t n, T s, T lo, T hi) {
  for (int64_t k = 0; k < n; ++k) out[k] = clamp_round(x[k] / s, lo, hi) * s;
}

// The input gradient and the step-gradient term of one element.
template <typename T>
MMC_INLINE T backward_element(T x, T g, T* gx, T s, T lo, T hi) {
  const T v = x / s;
  const bool inside = (v >= lo) & (v <= hi);
  const T level = clamp_round(v, lo, hi);
  *gx = g * (inside ? T(1) : T(0));
  return g * (inside ? level - v : level);
}

// Writes the input gradient of one run and returns its step-gradient sum,
// accumulated in double (16 lanes, so the loop vectorizes).
template <typename T>
MMC_INLINE double backward_run(const T* x, const T* g, T* gx, int64_t n, T s,
                               T lo, T hi) {
  double lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      lanes[j] += double(
          backward_element(x[k + j], g[k + j], gx + k + j, s, lo, hi));
    }
  }
  double total = 0.0;
  for (int j = 0; j < kLanes; ++j) total += lanes[j];
  for (; k < n; ++k) total += double(backward_element(x[k], g[k], gx + k, s, lo, hi));
  return total;
}

// Non-template entry points, compiled once per instruction set.
MMC_CLONES void forward_run_f(const float* x, float* out, int64_t n, float s,
                              float lo, float hi) {
  forward_run(x, out, n, s, lo, hi);
}
MMC_CLONES void forward_run_d(const double* x, double* out, int64_t n,
                              double s, double lo, double hi) {
  forward_run(x, out, n, s, lo, hi);
}
MMC_CLONES double backward_run_f(const float* x, const float* g, float* gx,
                                 int64_t n, float s, float lo, float hi) {
  return backward_run(x, g, gx, n, s, lo, hi);
}
MMC_CLONES double backward_run_d(const double* x, const double* g, double* gx,
                                 int64_t n, double s, double lo, double hi) {
  return backward_run(x, g, gx, n, s, lo, hi);
}
inline void forward_any(const float* x, float* o, int64_t n, float s, float lo,
                        float hi) {
  forward_run_f(x, o, n, s, lo, hi);
}
inline void forward_any(const double* x, double* o, int64_t n, double s,
                        double lo, double hi) {
  forward_run_d(x, o, n, s, lo, hi);
}
inline double backward_any(const float* x, const float* g, float* gx,
                           int64_t n, float s, float lo, float hi) {
  return backward_run_f(x, g, gx, n, s, lo, hi);
}
inline double backward_any(const double* x, const double* g, double* gx,
                           int64_t n, double s, double lo, double hi) {
  return backward_run_d(x, g, gx, n, s, lo, hi);
}

struct Layout {
  int64_t numel, channels, inner;
};

Layout layout_of(const at::Tensor& x, const at::Tensor& step, int64_t axis) {
  TORCH_CHECK(x.device().is_cpu() && step.device().is_cpu(),
              "mmcompress LSQ kernel: CPU tensors only");
  TORCH_CHECK(x.is_contiguous(), "mmcompress LSQ kernel: x must be contiguous");
  TORCH_CHECK(step.is_contiguous() && step.dim() == 1,
              "mmcompress LSQ kernel: step must be a contiguous 1-D tensor");
  TORCH_CHECK(x.scalar_type() == step.scalar_type(),
              "mmcompress LSQ kernel: x and step dtypes differ");
  const int64_t channels = step.numel();
  int64_t inner = 1;
  if (channels == 1) {
    inner = x.numel();
  } else {
    TORCH_CHECK(axis >= 0 && axis < x.dim() && x.size(axis) == channels,
                "mmcompress LSQ kernel: step length does not match axis");
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

at::Tensor lsq_forward(const at::Tensor& x, const at::Tensor& step,
                       int64_t qmin, int64_t qmax, int64_t axis) {
  const Layout l = layout_of(x, step, axis);
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_lsq_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t lo = scalar_t(qmin), hi = scalar_t(qmax);
    at::parallel_for(0, l.numel, kChunk, [&](int64_t begin, int64_t end) {
      for_runs(l, begin, end, [&](int64_t b, int64_t e, int64_t c) {
        forward_any(xp + b, op + b, e - b, sp[c], lo, hi);
      });
    });
  });
  return out;
}

template <typename T>
void backward_chunk(const Layout& l, const T* xp, const T* gp, const T* sp,
                    T* gxp, double* partial, int64_t begin, int64_t end, T lo,
                    T hi) {
  for_runs(l, begin, end, [&](int64_t b, int64_t e, int64_t c) {
    partial[c] += backward_any(xp + b, gp + b, gxp + b, e - b, sp[c], lo, hi);
  });
}

// Returns (grad_x, grad_step): grad_step is the per-channel sum (not yet
// times the LSQ gradient scale), in the dtype of x.
std::tuple<at::Tensor, at::Tensor> lsq_backward(const at::Tensor& grad,
                                                const at::Tensor& x,
                                                const at::Tensor& step,
                                                int64_t qmin, int64_t qmax,
                                                int64_t axis) {
  const Layout l = layout_of(x, step, axis);
  TORCH_CHECK(grad.is_contiguous() && grad.sizes() == x.sizes() &&
                  grad.scalar_type() == x.scalar_type(),
              "mmcompress LSQ kernel: grad must match x (contiguous)");
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_step = at::empty({l.channels}, step.options());
  const int64_t chunks = (l.numel + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks * l.channels), 0.0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_lsq_backward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* sp = step.data_ptr<scalar_t>();
    scalar_t* gxp = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
      for (int64_t chunk = first; chunk < last; ++chunk) {
        backward_chunk<scalar_t>(
            l, xp, gp, sp, gxp, partial.data() + chunk * l.channels,
            chunk * kChunk, std::min(l.numel, (chunk + 1) * kChunk),
            scalar_t(qmin), scalar_t(qmax));
      }
    });
    scalar_t* out = grad_step.data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.channels; ++c) {
      double sum = 0.0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        sum += partial[chunk * l.channels + c];
      }
      out[c] = scalar_t(sum);
    }
  });
  return {grad_x, grad_step};
}

}  // namespace

TORCH_LIBRARY(mmcompress_kernels, m) {
  m.def("lsq_forward(Tensor x, Tensor step, int qmin, int qmax, int axis) -> Tensor");
  m.def(
      "lsq_backward(Tensor grad, Tensor x, Tensor step, int qmin, int qmax, "
      "int axis) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmcompress_kernels, CPU, m) {
  m.impl("lsq_forward", &lsq_forward);
  m.impl("lsq_backward", &lsq_backward);
}
