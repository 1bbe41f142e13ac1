// Fused CPU kernels of PolarizedSelfAttention's full-resolution element-wise
// steps (mmcompress/models/plugins/psa_kernels.py builds and calls them).
//
// Shapes: x (N, C, S) with S = H * W, per-channel vectors (N, C), per-position
// vectors (N, S); every tensor contiguous, float32 or float64.
//
//   combine: out = x * (a[n, c] + b[n, s])   (a missing: 0; b missing: 0)
//            grad_x = g * (a + b), grad_a = sum_s g * x, grad_b = sum_c g * x
//   pool:    out[n, c] = sum_s x * q[n, s]
//            grad_x = g[n, c] * q[n, s], grad_q = sum_c g * x
//
// Each function reads and writes the full-resolution tensors once. Products
// are rounded as the eager expressions round them (no contraction into FMA:
// built with -ffp-contract=off); sums are accumulated in double.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

namespace {

// Row sums: kLanes independent partial sums in the tensor's type over blocks
// of kBlock elements (so that they vectorize), the block sums added in double.
constexpr int64_t kLanes = 8;
constexpr int64_t kBlock = 256;

// sum of row(k) for k in [0, s), row(k) returning a scalar_t; body(k) runs
// for every k as well (the other outputs of the same pass)
template <typename scalar_t, typename Term>
double row_sum(int64_t s, Term&& term) {
  double sum = 0.0;
  for (int64_t start = 0; start < s; start += kBlock) {
    const int64_t stop = std::min(s, start + kBlock);
    scalar_t part[kLanes] = {};
    int64_t k = start;
    for (; k + kLanes <= stop; k += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) part[j] += term(k + j);
    }
    for (; k < stop; ++k) part[0] += term(k);
    for (int64_t j = 0; j < kLanes; ++j) sum += part[j];
  }
  return sum;
}

void check_input(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 3 && x.is_contiguous(), op,
              ": expects a contiguous (N, C, S) CPU tensor, got ", x.sizes());
}

// a (N, C) or b (N, S), or zeros of that shape when missing
at::Tensor vector_or_zeros(const std::optional<at::Tensor>& v,
                           const at::Tensor& x, int64_t length,
                           const char* op) {
  if (!v.has_value() || !v->defined()) {
    return at::zeros({x.size(0), length}, x.options());
  }
  TORCH_CHECK(v->numel() == x.size(0) * length &&
                  v->scalar_type() == x.scalar_type() && v->is_contiguous(),
              op, ": a vector of ", x.size(0) * length, " contiguous ",
              x.scalar_type(), " values was expected, got ", v->sizes());
  return *v;
}

at::Tensor combine_forward(const at::Tensor& x,
                           const std::optional<at::Tensor>& a_opt,
                           const std::optional<at::Tensor>& b_opt) {
  check_input(x, "psa_combine_forward");
  const int64_t n = x.size(0), c = x.size(1), s = x.size(2);
  const at::Tensor a = vector_or_zeros(a_opt, x, c, "psa_combine_forward");
  const at::Tensor b = vector_or_zeros(b_opt, x, s, "psa_combine_forward");
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "psa_combine_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const scalar_t* xr = xp + row * s;
        const scalar_t* br = bp + (row / c) * s;
        scalar_t* orow = op + row * s;
        const scalar_t av = ap[row];
        for (int64_t k = 0; k < s; ++k) orow[k] = xr[k] * (av + br[k]);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> combine_backward(
    const at::Tensor& grad, const at::Tensor& x,
    const std::optional<at::Tensor>& a_opt,
    const std::optional<at::Tensor>& b_opt) {
  check_input(x, "psa_combine_backward");
  check_input(grad, "psa_combine_backward");
  TORCH_CHECK(grad.sizes() == x.sizes() &&
                  grad.scalar_type() == x.scalar_type(),
              "psa_combine_backward: grad ", grad.sizes(), " does not match x ",
              x.sizes());
  const int64_t n = x.size(0), c = x.size(1), s = x.size(2);
  const at::Tensor a = vector_or_zeros(a_opt, x, c, "psa_combine_backward");
  const at::Tensor b = vector_or_zeros(b_opt, x, s, "psa_combine_backward");
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_a = at::empty({n, c}, x.options());
  at::Tensor grad_b = at::empty({n, s}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "psa_combine_backward", [&] {
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    scalar_t* gxp = grad_x.data_ptr<scalar_t>();
    scalar_t* gap = grad_a.data_ptr<scalar_t>();
    scalar_t* gbp = grad_b.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> column(s);
      for (int64_t i = begin; i < end; ++i) {
        std::fill(column.begin(), column.end(), scalar_t(0));
        const scalar_t* br = bp + i * s;
        for (int64_t j = 0; j < c; ++j) {
          const int64_t row = i * c + j;
          const scalar_t* gr = gp + row * s;
          const scalar_t* xr = xp + row * s;
          scalar_t* gxr = gxp + row * s;
          const scalar_t av = ap[row];
          for (int64_t k = 0; k < s; ++k) gxr[k] = gr[k] * (av + br[k]);
          const double sum = row_sum<scalar_t>(s, [&](int64_t k) {
            const scalar_t product = gr[k] * xr[k];
            column[k] += product;
            return product;
          });
          gap[row] = static_cast<scalar_t>(sum);
        }
        for (int64_t k = 0; k < s; ++k) {
          gbp[i * s + k] = static_cast<scalar_t>(column[k]);
        }
      }
    });
  });
  return std::make_tuple(grad_x, grad_a, grad_b);
}

at::Tensor pool_forward(const at::Tensor& x, const at::Tensor& q) {
  check_input(x, "psa_pool_forward");
  const int64_t n = x.size(0), c = x.size(1), s = x.size(2);
  const at::Tensor weights = vector_or_zeros(q, x, s, "psa_pool_forward");
  at::Tensor out = at::empty({n, c}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "psa_pool_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* qp = weights.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const scalar_t* xr = xp + row * s;
        const scalar_t* qr = qp + (row / c) * s;
        const double sum = row_sum<scalar_t>(
            s, [&](int64_t k) -> scalar_t { return xr[k] * qr[k]; });
        op[row] = static_cast<scalar_t>(sum);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> pool_backward(const at::Tensor& grad,
                                                 const at::Tensor& x,
                                                 const at::Tensor& q) {
  check_input(x, "psa_pool_backward");
  const int64_t n = x.size(0), c = x.size(1), s = x.size(2);
  const at::Tensor g = vector_or_zeros(grad, x, c, "psa_pool_backward");
  const at::Tensor weights = vector_or_zeros(q, x, s, "psa_pool_backward");
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_q = at::empty({n, s}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "psa_pool_backward", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* qp = weights.data_ptr<scalar_t>();
    scalar_t* gxp = grad_x.data_ptr<scalar_t>();
    scalar_t* gqp = grad_q.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> column(s);
      for (int64_t i = begin; i < end; ++i) {
        std::fill(column.begin(), column.end(), scalar_t(0));
        const scalar_t* qr = qp + i * s;
        for (int64_t j = 0; j < c; ++j) {
          const int64_t row = i * c + j;
          const scalar_t* xr = xp + row * s;
          scalar_t* gxr = gxp + row * s;
          const scalar_t gv = gp[row];
          for (int64_t k = 0; k < s; ++k) gxr[k] = gv * qr[k];
          for (int64_t k = 0; k < s; ++k) column[k] += gv * xr[k];
        }
        for (int64_t k = 0; k < s; ++k) {
          gqp[i * s + k] = static_cast<scalar_t>(column[k]);
        }
      }
    });
  });
  return std::make_tuple(grad_x, grad_q);
}

}  // namespace

TORCH_LIBRARY(mmcompress_psa, m) {
  m.def("combine_forward(Tensor x, Tensor? a, Tensor? b) -> Tensor");
  m.def(
      "combine_backward(Tensor grad, Tensor x, Tensor? a, Tensor? b)"
      " -> (Tensor, Tensor, Tensor)");
  m.def("pool_forward(Tensor x, Tensor q) -> Tensor");
  m.def("pool_backward(Tensor grad, Tensor x, Tensor q) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmcompress_psa, CPU, m) {
  m.impl("combine_forward", &combine_forward);
  m.impl("combine_backward", &combine_backward);
  m.impl("pool_forward", &pool_forward);
  m.impl("pool_backward", &pool_backward);
}
