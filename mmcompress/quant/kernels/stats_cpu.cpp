// Per-channel mean of |x| equal to torch's x.abs().mean(dims 1.., keepdim)
// on the CPU bit for bit, in one read of x (no |x| temporary).
//
// torch sums each row (one channel of a contiguous tensor) with its cascade
// sum (aten/src/ATen/native/cpu/SumKernel.cpp: vectorized_inner_sum for rows
// of at least one vector, scalar_inner_sum below that) in the element type,
// then divides by the row length. The order of its additions depends on the
// lane count of its vectors (Vectorized<T>::size() of the capability torch
// dispatched to), which the caller passes: the Python side finds it by
// comparing this kernel with torch on a probe tensor. Rows are independent,
// so neither torch's nor this kernel's result depends on the thread count
// (torch splits a reduction with a single output across threads: callers
// pass at least two channels).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace mmc {
namespace {

int64_t ceil_log2(int64_t x) {
  if (x <= 2) return 1;
  int64_t bits = 0;
  for (uint64_t v = static_cast<uint64_t>(x - 1); v != 0; v >>= 1) ++bits;
  return bits;
}

// torch's row_sum over `size` vectors of W lanes (W = 1: the scalar sum):
// four interleaved partial sums (ILP), each a four-level cascade (each level
// adds 2^power sums of the level below), the vectors after the last full
// group of four into partial 0, then partials 1-3 into partial 0, per lane.
template <typename T, int W>
void cascade_abs_sum(const T* data, int64_t size, T* out) {
  constexpr int kIlp = 4;
  constexpr int kLevels = 4;
  const int64_t groups = size / kIlp;
  const int64_t power = std::max<int64_t>(4, ceil_log2(groups) / kLevels);
  const int64_t step = int64_t(1) << power;
  const int64_t mask = step - 1;
  T acc[kLevels][kIlp][W];
  std::fill_n(&acc[0][0][0], kLevels * kIlp * W, T(0));
  auto add_group = [&](int64_t g) {
    const T* base = data + g * kIlp * W;
    for (int k = 0; k < kIlp; ++k)
      for (int l = 0; l < W; ++l) acc[0][k][l] += std::fabs(base[k * W + l]);
  };
  int64_t i = 0;
  while (i + step <= groups) {
    for (int64_t j = 0; j < step; ++j, ++i) add_group(i);
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kIlp; ++k)
        for (int l = 0; l < W; ++l) {
          acc[j][k][l] += acc[j - 1][k][l];
          acc[j - 1][k][l] = T(0);
        }
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < groups; ++i) add_group(i);
  for (int j = 1; j < kLevels; ++j)
    for (int k = 0; k < kIlp; ++k)
      for (int l = 0; l < W; ++l) acc[0][k][l] += acc[j][k][l];
  for (int64_t v = groups * kIlp; v < size; ++v)
    for (int l = 0; l < W; ++l) acc[0][0][l] += std::fabs(data[v * W + l]);
  for (int k = 1; k < kIlp; ++k)
    for (int l = 0; l < W; ++l) acc[0][0][l] += acc[0][k][l];
  std::copy_n(acc[0][0], W, out);
}

// Sum of |row| in torch's order (SumKernel.cpp, cascade_sum).
template <typename T, int W>
T row_abs_sum(const T* row, int64_t n) {
  if (n < W) {  // scalar_inner_sum
    T total;
    cascade_abs_sum<T, 1>(row, n, &total);
    return total;
  }
  // vectorized_inner_sum: the vectors, then the tail, then the lanes
  const int64_t vectors = n / W;
  T lanes[W];
  cascade_abs_sum<T, W>(row, vectors, lanes);
  T total = T(0);
  for (int64_t k = vectors * W; k < n; ++k) total += std::fabs(row[k]);
  for (int l = 0; l < W; ++l) total += lanes[l];
  return total;
}

template <typename T, int W>
void channel_abs_mean_impl(const T* x, T* out, int64_t channels, int64_t n) {
  at::parallel_for(0, channels, std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t c = begin; c < end; ++c)
                       out[c] = (T(0) + row_abs_sum<T, W>(x + c * n, n)) / T(n);
                   });
}

at::Tensor channel_abs_mean(const at::Tensor& x, int64_t lanes) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() >= 1,
              "channel_abs_mean: a contiguous CPU tensor is needed");
  const int64_t channels = x.size(0);
  const int64_t n = channels > 0 ? x.numel() / channels : 0;
  TORCH_CHECK(n > 0, "channel_abs_mean: empty channels");
  at::Tensor out = at::empty({channels}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_channel_abs_mean", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    switch (lanes) {
      case 2: channel_abs_mean_impl<scalar_t, 2>(xp, op, channels, n); break;
      case 4: channel_abs_mean_impl<scalar_t, 4>(xp, op, channels, n); break;
      case 8: channel_abs_mean_impl<scalar_t, 8>(xp, op, channels, n); break;
      case 16: channel_abs_mean_impl<scalar_t, 16>(xp, op, channels, n); break;
      default: TORCH_CHECK(false, "channel_abs_mean: lanes must be 2, 4, 8 or 16");
    }
  });
  return out;
}

}  // namespace
}  // namespace mmc

TORCH_LIBRARY_FRAGMENT(mmcompress_kernels, m) {
  m.def("channel_abs_mean(Tensor x, int lanes) -> Tensor");
}

TORCH_LIBRARY_IMPL(mmcompress_kernels, CPU, m) {
  m.impl("channel_abs_mean", &mmc::channel_abs_mean);
}
