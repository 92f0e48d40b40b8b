#pragma once

// Shared helpers of the test suite: tensor comparison, gradient checks, temporary
// directories, running the command line, and the seeding fixture every test uses.

#include "remove_tree.h"
#include "torchae/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace torchae::test {

/// Whether this program runs under AddressSanitizer (scripts/sanitize.sh's build), where a test
/// may bound its memory differently or check its heaviest figures on a slice of the data.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

/// The configurations of every family the registry lists, read from tests/families/<name>.json
/// (a list of model sections: the family and its notable options, for examples of shape
/// {1, 6, 5}), in the registry's order: the suites that every family must pass run over them. A
/// family without its file has none here, which Families.EveryRegisteredFamilyHasTestConfigurations
/// reports.
const std::vector<std::string>& family_configs();
/// tests/families/<family>.json.
std::filesystem::path family_config_file(const std::string& family);

/// Train options for a quiet run of `epochs` epochs on the CPU (the rest at their defaults).
inline TrainOptions quiet_cpu_options(int64_t epochs) {
  TrainOptions options;
  options.epochs = epochs;
  options.device = "cpu";
  options.progress = "none";
  return options;
}

/// `to`'s weights become `from`'s, through the serializer (as a checkpoint carries them).
inline void copy_weights(Autoencoder& from, Autoencoder& to) {
  std::stringstream buffer;
  torch::serialize::OutputArchive out;
  from.module().save(out);
  out.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  to.module().load(in);
}

/// Every test starts from the same global seed.
class TorchaeTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

/// Asserts |a - b| <= atol + rtol * |b| elementwise, reporting the worst element.
inline void expect_tensors_near(const torch::Tensor& a, const torch::Tensor& b, double atol, double rtol = 0.0) {
  ASSERT_EQ(a.sizes(), b.sizes());
  const torch::Tensor ad = a.detach().cpu().to(torch::kFloat64);
  const torch::Tensor bd = b.detach().cpu().to(torch::kFloat64);
  const torch::Tensor excess = (ad - bd).abs() - (atol + rtol * bd.abs());
  const int64_t worst = excess.flatten().argmax().item<int64_t>();
  EXPECT_LE(excess.flatten()[worst].item<double>(), 0.0)
      << "worst element " << worst << ": " << ad.flatten()[worst].item<double>() << " vs "
      << bd.flatten()[worst].item<double>();
}

/// Compares the autograd gradient of a scalar function f at x (float64) with central finite
/// differences, on up to `probes` randomly chosen coordinates.
inline void check_gradient(const std::function<torch::Tensor(const torch::Tensor&)>& f, torch::Tensor x,
                           double eps = 1e-6, double tol = 1e-5, int64_t probes = 20) {
  ASSERT_EQ(x.scalar_type(), torch::kFloat64) << "gradient checks need float64";
  x = x.detach().clone().requires_grad_(true);
  const torch::Tensor value = f(x);
  ASSERT_EQ(value.numel(), 1);
  const torch::Tensor grad = torch::autograd::grad({value}, {x})[0].flatten();
  const torch::Tensor flat = x.detach().flatten();
  const torch::Tensor picks = torch::randperm(flat.numel()).narrow(0, 0, std::min(probes, flat.numel()));
  for (int64_t k = 0; k < picks.numel(); ++k) {
    const int64_t i = picks[k].item<int64_t>();
    torch::Tensor plus = flat.clone(), minus = flat.clone();
    plus[i] += eps;
    minus[i] -= eps;
    const double numeric = (f(plus.view(x.sizes())).item<double>() - f(minus.view(x.sizes())).item<double>()) / (2 * eps);
    EXPECT_NEAR(grad[i].item<double>(), numeric, tol * std::max(1.0, std::abs(numeric))) << "coordinate " << i;
  }
}

/// A smooth colour image [3, h, w] in [0, 1], another for each `phase`: crops at different
/// places differ, and it compresses well as PNG.
inline torch::Tensor smooth_colour(int64_t h, int64_t w, double phase) {
  const torch::Tensor y = torch::linspace(0, 3, h).view({1, h, 1}), x = torch::linspace(0, 3, w).view({1, 1, w});
  const torch::Tensor c = torch::tensor({0.0, 1.0, 2.0}).view({3, 1, 1});
  return (0.5 + 0.5 * torch::sin(y * 1.3 + x * 0.7 + c + phase)).to(torch::kFloat32);
}

/// A fresh directory under the system's temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string name = (std::filesystem::temp_directory_path() / "torchae_test_XXXXXX").string();
    if (mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp failed in " + name);
    path_ = name;
  }
  ~TempDir() { remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// What a run of the `torchae` binary gave.
struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs a shell command, capturing its exit code, stdout and stderr.
CliResult run_command(const std::string& command);

/// Width and height of a PNG file, from its IHDR chunk (bytes 16-23, big-endian); {0, 0} when it
/// is not a PNG.
std::pair<int, int> png_size(const std::filesystem::path& path);

/// `train` options for small, fast runs on the first 1,200 Fashion-MNIST images.
inline const std::string kSmallRun = "--set data.limit=1200 --set train.batch_size=64 --set model.hidden=[64] "
                                     "--set model.code_size=16 --set train.progress=lines";

/// Runs the built `torchae` with `args` (shell-quoted by the caller where needed).
CliResult run_cli(const std::string& args);

/// Expects `build_model(section, spec)` to refuse the section with an Error that names `key`.
void expect_refused(const Json& section, const DataSpec& spec, const std::string& key);

/// Expects a failed run of the command line that printed one line, "torchae: error: ...",
/// containing `fragment`.
inline void expect_one_line_error(const CliResult& r, const std::string& fragment) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err.rfind("torchae: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
}

/// Reads every line of metrics.jsonl as JSON text.
std::vector<std::string> read_lines(const std::filesystem::path& path);

/// Whether Debian's Fashion-MNIST package is installed (scripts/install-deps.sh installs it).
bool have_fashion_mnist();

}  // namespace torchae::test
