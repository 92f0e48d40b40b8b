#include "torchae/nn/penalties.h"

#include "torchae/core/config.h"
#include "torchae/core/error.h"
#include "torchae/nn/fused.h"

#include <torch/torch.h>

#include <fmt/format.h>

namespace torchae {

torch::Tensor l1_penalty(const torch::Tensor& code) { return code.abs().sum(1).mean(); }

torch::Tensor kl_sparsity_penalty(const torch::Tensor& code, double rho) {
  TORCH_CHECK(rho > 0 && rho < 1, "kl_sparsity_penalty: rho must be in (0, 1)");
  {
    torch::NoGradGuard no_grad;
    const double lo = code.min().item<double>(), hi = code.max().item<double>();
    if (lo < 0.0 || hi > 1.0) {
      throw Error(fmt::format("KL sparsity needs a code in [0, 1] (a sigmoid code); this one spans [{:.3g}, {:.3g}]",
                              lo, hi));
    }
  }
  // Clamped away from 0 and 1 so that a dead or saturated unit gives a large, finite penalty.
  const torch::Tensor rho_hat = code.mean(0).clamp(1e-6, 1 - 1e-6);
  return (rho * torch::log(rho / rho_hat) + (1 - rho) * torch::log((1 - rho) / (1 - rho_hat))).sum();
}

const std::vector<std::string>& jacobian_method_names() {
  static const std::vector<std::string> names{"exact", "hutchinson", "analytic"};
  return names;
}

JacobianMethod parse_jacobian_method(const std::string& name) {
  return static_cast<JacobianMethod>(index_of_name(jacobian_method_names(), name, "Jacobian method"));
}

std::string to_string(JacobianMethod method) { return jacobian_method_names().at(static_cast<std::size_t>(method)); }

torch::Tensor jacobian_penalty(const torch::Tensor& code, const torch::Tensor& input, JacobianMethod method,
                               int64_t probes) {
  TORCH_CHECK(input.requires_grad(), "jacobian_penalty: the input must require grad");
  TORCH_CHECK(method != JacobianMethod::analytic, "jacobian_penalty: use sigmoid_jacobian_penalty for analytic");
  const int64_t batch = code.size(0);
  torch::Tensor total = torch::zeros({}, code.options());
  if (method == JacobianMethod::exact) {
    // Row j of every example's Jacobian at once: examples are independent, so the gradient of
    // sum_b h_bj w.r.t. x_b is dh_bj/dx_b.
    for (int64_t j = 0; j < code.size(1); ++j) {
      const torch::Tensor row = torch::autograd::grad({code.select(1, j).sum()}, {input}, {}, true, true)[0];
      total = total + row.pow(2).sum();
    }
  } else {
    TORCH_CHECK(probes >= 1, "jacobian_penalty: at least one probe");
    for (int64_t p = 0; p < probes; ++p) {
      // Rademacher probes, from the counter-based uniforms (randint draws one number at a time).
      const torch::Tensor v = (uniform_like(code) < 0.5).to(code.scalar_type()).mul_(2).sub_(1);
      const torch::Tensor jtv = torch::autograd::grad({code}, {input}, {v}, true, true)[0];
      total = total + jtv.pow(2).sum();
    }
    total = total / static_cast<double>(probes);
  }
  return total / static_cast<double>(batch);
}

torch::Tensor sigmoid_jacobian_penalty(const torch::Tensor& code, const torch::Tensor& weight) {
  // J = diag(h (1 - h)) W, so ||J||_F^2 = sum_j (h_j (1 - h_j))^2 ||W_j||^2 (Rifai et al. 2011).
  const torch::Tensor slope = (code * (1 - code)).pow(2);       // [B, k]
  const torch::Tensor row_norms = weight.pow(2).sum(1);        // [k]
  return slope.mv(row_norms).mean();
}

const std::vector<double>& mmd_kernel_scales() {
  // Tolstikhin et al. 2018, section 4: "we used ... C = 2 d_z sigma_z^2 s" for these s.
  static const std::vector<double> scales{0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0};
  return scales;
}

namespace {

// The kernel summed over the scales, on a matrix of squared distances.
torch::Tensor summed_kernel(const torch::Tensor& squared_distance, MmdKernel kernel, double base,
                            const std::vector<double>& scales) {
  torch::Tensor total = torch::zeros_like(squared_distance);
  for (double s : scales) {
    const double c = base * s;
    total = total + (kernel == MmdKernel::inverse_multiquadratic ? c / (c + squared_distance)
                                                                 : torch::exp(-squared_distance / c));
  }
  return total;
}

// Mean of a square kernel matrix off its diagonal.
torch::Tensor off_diagonal_mean(const torch::Tensor& k) {
  const auto n = static_cast<double>(k.size(0));
  return (k.sum() - k.diagonal().sum()) / (n * (n - 1.0));
}

}  // namespace

torch::Tensor mmd_penalty(const torch::Tensor& x, const torch::Tensor& y, MmdKernel kernel, double base,
                          const std::vector<double>& scales) {
  TORCH_CHECK(x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1), "mmd_penalty: expected [n, d] and [m, d]");
  TORCH_CHECK(x.size(0) >= 2 && y.size(0) >= 2, "mmd_penalty: the U-statistic needs at least 2 samples of each");
  TORCH_CHECK(base > 0 && !scales.empty(), "mmd_penalty: base must be > 0, with at least one scale");
  // Squared distances from the Gram matrices; clamped, as rounding can make them slightly negative.
  auto squared = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a.pow(2).sum(1, true) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a.mm(b.t())).clamp_min(0.0);
  };
  const torch::Tensor kxx = summed_kernel(squared(x, x), kernel, base, scales);
  const torch::Tensor kyy = summed_kernel(squared(y, y), kernel, base, scales);
  const torch::Tensor kxy = summed_kernel(squared(x, y), kernel, base, scales);
  return off_diagonal_mean(kxx) + off_diagonal_mean(kyy) - 2.0 * kxy.mean();
}

}  // namespace torchae
