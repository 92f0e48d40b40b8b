#pragma once

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace torchae {

/// sum_j |h_j|, averaged over the batch (Ng, "Sparse autoencoder", CS294A notes; the L1 form).
torch::Tensor l1_penalty(const torch::Tensor& code);

/// sum_j KL(rho || rho_hat_j), rho_hat_j the batch mean of code unit j (Ng, CS294A, section
/// 2.3). The code must lie in [0, 1] (a sigmoid code): anything else is refused with an Error.
torch::Tensor kl_sparsity_penalty(const torch::Tensor& code, double rho);

/// How the contractive penalty ||J_f(x)||_F^2 is computed.
enum class JacobianMethod {
  /// Autograd double backward, one backward pass per code unit: exact for any encoder.
  exact,
  /// Hutchinson's estimator with Rademacher probes, unbiased for any encoder: E_v ||J v||^2, v
  /// in the input's space, pushed forward through an MLP encoder beside the input
  /// (`hutchinson_penalty`); E_u ||J^T u||^2, u in the code's space, one backward pass per
  /// probe (`jacobian_penalty`) through other encoders.
  hutchinson,
  /// The closed form of Rifai et al. (ICML 2011, eq. 3) for h = sigmoid(W x + b):
  /// sum_j (h_j (1 - h_j))^2 sum_i W_ji^2.
  analytic,
};

JacobianMethod parse_jacobian_method(const std::string& name);
std::string to_string(JacobianMethod method);
const std::vector<std::string>& jacobian_method_names();

/// ||J||_F^2 of code = f(input) w.r.t. input, averaged over the batch, differentiable
/// (create_graph) so that it can be trained. `input` must require grad and `code` must have
/// been computed from it; f must treat examples independently. `probes`: Hutchinson only.
torch::Tensor jacobian_penalty(const torch::Tensor& code, const torch::Tensor& input, JacobianMethod method,
                               int64_t probes = 1);

/// Hutchinson's estimate of ||J||_F^2, averaged over the batch, from the Jacobian-vector
/// products J v of Rademacher directions v, [probes, batch, code] (`Output::code_tangents`):
/// the mean over probes and examples of ||J v||^2, as E_v[v^T J^T J v] = tr(J^T J).
torch::Tensor hutchinson_penalty(const torch::Tensor& code_tangents);

/// The analytic penalty for a sigmoid code h = sigmoid(x W^T + b), averaged over the batch.
torch::Tensor sigmoid_jacobian_penalty(const torch::Tensor& code, const torch::Tensor& weight);

/// h = sigmoid(x W^T + b) and its analytic penalty (`sigmoid_jacobian_penalty(h, W)`) as one
/// autograd node whose backward adds the penalty's weight gradient to the layer's in one
/// product: the contractive family's training step on its default encoder. First-order
/// gradients only; an undefined `bias` is none.
std::pair<torch::Tensor, torch::Tensor> sigmoid_layer_with_jacobian_penalty(const torch::Tensor& x,
                                                                             const torch::Tensor& weight,
                                                                             const torch::Tensor& bias);

/// Kernels of the MMD penalty.
enum class MmdKernel {
  /// Inverse multiquadratic, C / (C + ||x - y||^2) (the WAE paper's choice: heavy tails keep
  /// gradients alive for outliers).
  inverse_multiquadratic,
  /// Gaussian, exp(-||x - y||^2 / C).
  rbf,
};

/// The WAE paper's kernel scales: the kernel is summed over C = 2 * d * sigma^2 * s for these s.
const std::vector<double>& mmd_kernel_scales();

/// The unbiased U-statistic estimate of MMD^2 between the samples `x` [n, d] and `y` [m, d]
/// (Gretton et al. 2012, eq. 3), with `kernel` summed over C = base * s for s in `scales`:
/// mean over i != j of k(x_i, x_j) + mean over i != j of k(y_i, y_j) - 2 mean of k(x_i, y_j).
/// Zero in expectation when x and y come from one distribution; may then be negative.
///
///   torch::Tensor d = mmd_penalty(codes, prior_sample, MmdKernel::inverse_multiquadratic, 2.0 * 8);
torch::Tensor mmd_penalty(const torch::Tensor& x, const torch::Tensor& y, MmdKernel kernel, double base,
                          const std::vector<double>& scales = mmd_kernel_scales());

}  // namespace torchae
