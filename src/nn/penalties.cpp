#include "torchae/nn/penalties.h"

#include "torchae/core/config.h"
#include "torchae/core/error.h"
#include "torchae/core/parallel.h"
#include "torchae/nn/fused.h"
#include "kernels.h"

#include <torch/autograd.h>
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
      // Rademacher probes, from the counter-based generator (randint draws one number at a time).
      const torch::Tensor v = rademacher_like(code);
      const torch::Tensor jtv = torch::autograd::grad({code}, {input}, {v}, true, true)[0];
      total = total + jtv.pow(2).sum();
    }
    total = total / static_cast<double>(probes);
  }
  return total / static_cast<double>(batch);
}

torch::Tensor hutchinson_penalty(const torch::Tensor& code_tangents) {
  TORCH_CHECK(code_tangents.dim() == 3, "hutchinson_penalty: expected [probes, batch, code], got ",
              code_tangents.sizes());
  return code_tangents.pow(2).sum() / static_cast<double>(code_tangents.size(0) * code_tangents.size(1));
}

torch::Tensor sigmoid_jacobian_penalty(const torch::Tensor& code, const torch::Tensor& weight) {
  // J = diag(h (1 - h)) W, so ||J||_F^2 = sum_j (h_j (1 - h_j))^2 ||W_j||^2 (Rifai et al. 2011).
  const torch::Tensor slope = (code * (1 - code)).pow(2);       // [B, k]
  const torch::Tensor row_norms = weight.pow(2).sum(1);        // [k]
  return slope.mv(row_norms).mean();
}

namespace {

// The sigmoid layer and its closed-form penalty as one autograd node. With s = h (1 - h) and
// r_j = ||W_j||^2, P = sum_bj s_bj^2 r_j / B; dP/dz = 2 s^2 (1 - 2h) r / B and dP/dW_j =
// 2 W_j sum_b s_bj^2 / B. The backward adds the second to the layer's own weight gradient
// inside the product (addmm onto the scaled W), where the composite sent W two gradients
// that autograd added out of place (0.2 ms a step of the 784-128 benchmark layer) after the
// three passes of W^2's backward. First order only.
class SigmoidLayerWithPenalty : public torch::autograd::Function<SigmoidLayerWithPenalty> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                                                const torch::Tensor& weight, const torch::Tensor& bias) {
    const torch::Tensor h = torch::sigmoid(torch::addmm(bias, x, weight.t()));
    const torch::Tensor s = h * (1 - h);
    const torch::Tensor row_norms = weight.norm(2, {1}).square();  // one pass over W, no temporary
    const torch::Tensor penalty = s.pow(2).mv(row_norms).sum() / static_cast<double>(x.size(0));
    ctx->save_for_backward({x, weight, h, s, row_norms});
    return {h, penalty};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &h = saved[2], &s = saved[3], &row_norms = saved[4];
    const torch::Tensor &gh = grads[0], &gp = grads[1];
    torch::Tensor gz = gh.defined() ? gh * s : torch::zeros_like(h);
    torch::Tensor gw;
    if (gp.defined()) {
      const torch::Tensor scale = gp * (2.0 / static_cast<double>(x.size(0)));  // 0-dim
      const torch::Tensor s2 = s.pow(2);
      gz = gz + s2 * (1 - 2 * h) * row_norms * scale;
      gw = weight * (s2.sum(0) * scale).unsqueeze(1);
      gw.addmm_(gz.t(), x);
    } else {
      gw = gz.t().mm(x);
    }
    const torch::Tensor gx = ctx->needs_input_grad(0) ? gz.mm(weight) : torch::Tensor();
    const torch::Tensor gb = ctx->needs_input_grad(2) ? gz.sum(0) : torch::Tensor();
    return {gx, gw, gb};
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> sigmoid_layer_with_jacobian_penalty(const torch::Tensor& x,
                                                                             const torch::Tensor& weight,
                                                                             const torch::Tensor& bias) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1),
              "sigmoid_layer_with_jacobian_penalty: expected x [batch, in] and weight [out, in], got ", x.sizes(),
              " and ", weight.sizes());
  // Undefined tensors cannot enter a custom autograd function: no bias is a zero one.
  const torch::Tensor b = bias.defined() ? bias : torch::zeros({weight.size(0)}, weight.options());
  auto outputs = SigmoidLayerWithPenalty::apply(x, weight, b);
  return {outputs[0], outputs[1]};
}

const std::vector<double>& mmd_kernel_scales() {
  // Tolstikhin et al. 2018, section 4: "we used ... C = 2 d_z sigma_z^2 s" for these s.
  static const std::vector<double> scales{0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0};
  return scales;
}

namespace {

// The kernel summed over the scales, on a matrix of squared distances, as one autograd node:
// the composite made three element-wise passes a scale forward and more back, 63 small
// operations a step forward for the three matrices at seven scales (with it the WAE's step cost
// 1.42-1.54x a plain one's, without it 1.13-1.35x). Float CPU tensors in one loop; others by
// LibTorch's operations. First order only.
class SummedKernel : public torch::autograd::Function<SummedKernel> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& squared_distance,
                               int64_t kernel, std::vector<double> cs) {
    ctx->save_for_backward({squared_distance});
    ctx->saved_data["kernel"] = kernel;
    ctx->saved_data["cs"] = cs;
    return evaluate(squared_distance, torch::Tensor(), static_cast<MmdKernel>(kernel), cs);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const torch::Tensor d = ctx->get_saved_variables()[0];
    const auto kernel = static_cast<MmdKernel>(ctx->saved_data["kernel"].toInt());
    const std::vector<double> cs = ctx->saved_data["cs"].toDoubleVector();
    return {evaluate(d, grads[0], kernel, cs), torch::Tensor(), torch::Tensor()};
  }

 private:
  // The summed kernel of d, or, given grad, its derivative times grad.
  static torch::Tensor evaluate(const torch::Tensor& d, const torch::Tensor& grad, MmdKernel kernel,
                                const std::vector<double>& cs) {
    const bool imq = kernel == MmdKernel::inverse_multiquadratic;
    const auto dense_float = [](const torch::Tensor& t) {
      return t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous();
    };
    if (dense_float(d) && (!grad.defined() || dense_float(grad))) {
      torch::Tensor out = torch::empty_like(d);
      const float* dp = d.data_ptr<float>();
      const float* gp = grad.defined() ? grad.data_ptr<float>() : nullptr;
      float* op = out.data_ptr<float>();
      parallel_for(0, d.numel(), int64_t{1} << 13, [&](int64_t begin, int64_t end) {
        kernels::summed_kernel(dp, gp, op, begin, end, cs.data(), static_cast<int>(cs.size()), imq);
      });
      return out;
    }
    torch::Tensor total = torch::zeros_like(d);
    for (double c : cs) {
      if (!grad.defined()) {
        total += imq ? c / (c + d) : torch::exp(-d / c);
      } else {
        total -= imq ? (c / (c + d)).pow(2) / c : torch::exp(-d / c) / c;
      }
    }
    return grad.defined() ? total * grad : total;
  }
};

torch::Tensor summed_kernel(const torch::Tensor& squared_distance, MmdKernel kernel, double base,
                            const std::vector<double>& scales) {
  std::vector<double> cs;
  for (double s : scales) cs.push_back(base * s);
  return SummedKernel::apply(squared_distance, static_cast<int64_t>(kernel), cs);
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
