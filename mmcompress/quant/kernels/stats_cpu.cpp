// Weight statistics equal to torch's on the CPU bit for bit: the per-channel
// mean of |x| (x.abs().mean(dims 1.., keepdim)) in one read of x (no |x|
// temporary), and the whole tensor's mean and std in two reads (torch's
// x.std() and x.mean() take three).
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
#include <ATen/ops/mean.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

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

// (mean, std) of the whole tensor as x.mean() and x.std() (unbiased): torch's
// std on the CPU (ReduceOps.cpp, std_var_all_cpu) takes x.mean() in double,
// then sums (double(x) - mean)^2 in double, sequentially within each chunk of
// at::parallel_reduce (above 32768 elements with several threads: the
// element range split into min(threads, ceil(numel / 32768)) equal chunks),
// the chunk sums added in order from 0; then sqrt(sum / (numel - 1)) rounded
// to the element type. The mean is torch's own (at::mean), taken once for
// both statistics. The chunking depends on the thread count as torch's does.
std::tuple<at::Tensor, at::Tensor> std_mean_all(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.numel() >= 2,
              "std_mean_all: a contiguous CPU tensor of two elements or more is needed");
  constexpr int64_t kGrain = 32768;  // at::internal::GRAIN_SIZE
  const at::Tensor mean = x.mean();
  const double m = mean.item<double>();
  const int64_t numel = x.numel();
  const int64_t threads = at::get_num_threads();
  int64_t parts = 1;
  if (numel > kGrain && threads > 1 && !at::in_parallel_region())
    parts = std::min(threads, (numel + kGrain - 1) / kGrain);
  const int64_t chunk = (numel + parts - 1) / parts;
  std::vector<double> partial(parts, 0.0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_std_mean_all", [&] {
    const scalar_t* p = x.data_ptr<scalar_t>();
    at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t end = std::min(numel, (t + 1) * chunk);
        double local = 0.0;
        for (int64_t i = t * chunk; i < end; ++i) {
          const double d = static_cast<double>(p[i]) - m;
          local += d * d;
        }
        partial[t] = 0.0 + local;
      }
    });
  });
  double total = 0.0;
  for (const double s : partial) total += s;
  const double var = total / std::max(0.0, static_cast<double>(numel) - 1.0);
  at::Tensor std_out = at::empty({}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mmcompress_std_mean_all_out", [&] {
    *std_out.data_ptr<scalar_t>() = static_cast<scalar_t>(std::sqrt(var));
  });
  return {mean, std_out};
}

}  // namespace
}  // namespace mmc

TORCH_LIBRARY_FRAGMENT(mmcompress_kernels, m) {
  m.def("channel_abs_mean(Tensor x, int lanes) -> Tensor");
  m.def("std_mean_all(Tensor x) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmcompress_kernels, CPU, m) {
  m.impl("channel_abs_mean", &mmc::channel_abs_mean);
  m.impl("std_mean_all", &mmc::std_mean_all);
}
