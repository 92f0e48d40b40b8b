#include "torchae/nn/binary_code.h"

#include "torchae/core/config.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <cmath>

namespace torchae {

const std::vector<std::string>& binary_code_names() {
  static const std::vector<std::string> names{"none", "noise", "sign"};
  return names;
}

BinaryCode parse_binary_code(const std::string& name) {
  return static_cast<BinaryCode>(index_of_name(binary_code_names(), name, "binary code"));
}

std::string to_string(BinaryCode code) { return binary_code_names()[static_cast<std::size_t>(code)]; }

torch::Tensor binary_code_bits(const torch::Tensor& a) { return a.gt(0).to(torch::kUInt8); }

std::string script_binary_code_bits(const std::string& var) { return fmt::format("torch.gt({}, 0.0).byte()", var); }

torch::Tensor BinaryCodeLayer::example_noise(const torch::Tensor& key, int64_t units) {
  // Detached: the noise is a constant of the example, not a function to differentiate (in a
  // stack the key is the code of the layers below, which fine-tuning trains).
  const torch::Tensor x = key.detach().flatten(1).to(torch::kFloat64);
  const int64_t features = x.size(1);
  if (!projection_.defined() || projection_.size(0) != features + 1 || projection_.size(1) != units) {
    projection_ = torch::randn({features + 1, units}, at::detail::createCPUGenerator(options.seed()),
                               torch::TensorOptions(torch::kFloat64));
  }
  if (projection_.device() != x.device()) projection_ = projection_.to(x.device());
  // A fixed random projection of the example (its last row an offset, so that an all-zero example
  // is not special), scaled far beyond the spacing of the data and taken modulo 1: a uniform
  // number per example and unit that does not change from epoch to epoch, which the inverse of
  // the normal distribution function makes Gaussian. In double precision, the projection's
  // rounding (which depends on the batch) moves it by about 1e-12.
  const torch::Tensor p = torch::addmm(projection_[features], x, projection_.narrow(0, 0, features)) * 4099.0;
  const torch::Tensor u = (p - p.floor()).clamp(1e-12, 1.0 - 1e-12);
  return (options.noise() * std::sqrt(2.0) * torch::erfinv(2.0 * u - 1.0)).to(key.scalar_type());
}

torch::Tensor BinaryCodeLayer::forward(const torch::Tensor& a, const torch::Tensor& key, bool training) {
  switch (options.kind()) {
    case BinaryCode::none:
      return a;
    case BinaryCode::noise:
      if (!training) return a.gt(0).to(a.scalar_type());
      return torch::sigmoid(a + example_noise(key, a.size(1)).to(a.dtype()));
    case BinaryCode::sign: {
      const torch::Tensor sign = a.gt(0).to(a.scalar_type()) * 2.0 - 1.0;
      if (!training) return sign;
      // The gradient passes as if the sign were the identity. Its clipped form (zero where
      // |a| > 1) lets an encoder push every unit out of [-1, 1] in the first updates, after
      // which no gradient reaches it: measured, a 784-1000-500-32 code under Adam stopped there
      // within an epoch, at the reconstruction of the mean image.
      return a + (sign - a).detach();
    }
  }
  return a;
}

torch::Tensor BinaryCodeLayer::relaxed(const torch::Tensor& a) const {
  return options.kind() == BinaryCode::sign ? a : torch::sigmoid(a);
}

std::string BinaryCodeLayer::script(const std::string& var) const {
  if (options.kind() == BinaryCode::sign) return fmt::format("{0} = torch.gt({0}, 0.0).type_as({0}) * 2.0 - 1.0", var);
  return fmt::format("{0} = torch.gt({0}, 0.0).type_as({0})", var);
}

}  // namespace torchae
