#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/core/runtime.h"
#include "torchae/data/dataset.h"
#include "torchae/models/registry.h"

#include <fmt/format.h>

#include <sstream>

namespace torchae::test {

namespace {

// `text` without the notice AddressSanitizer prints when it refuses an allocation too large to
// serve (scripts/sanitize.sh lets such allocations fail, as malloc's do): what torchae itself
// printed. Any other sanitizer report stays, and fails the test.
std::string without_sanitizer_notices(const std::string& text) {
  std::istringstream lines(text);
  std::string kept;
  for (std::string line; std::getline(lines, line);) {
    const bool notice = line.rfind("==", 0) == 0 && line.find("==WARNING: AddressSanitizer failed to allocate") != std::string::npos;
    if (!notice) kept += line + "\n";
  }
  if (!text.empty() && text.back() != '\n' && !kept.empty()) kept.pop_back();
  return kept;
}

}  // namespace

CliResult run_command(const std::string& command) {
  TempDir dir;
  const auto out = dir / "stdout", err = dir / "stderr";
  const std::string redirected = fmt::format("{} > '{}' 2> '{}' < /dev/null", command, out.string(), err.string());
  const int status = std::system(redirected.c_str());
  CliResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text(out);
  result.err = without_sanitizer_notices(read_text(err));
  return result;
}

CliResult run_cli(const std::string& args) { return run_command(fmt::format("'{}' {}", TORCHAE_CLI, args)); }

std::pair<int, int> png_size(const std::filesystem::path& path) {
  const std::string bytes = read_text(path);
  if (bytes.size() < 24 || bytes.compare(1, 3, "PNG") != 0) return {0, 0};
  auto word = [&](std::size_t at) {
    int value = 0;
    for (std::size_t i = 0; i < 4; ++i) value = value * 256 + static_cast<unsigned char>(bytes[at + i]);
    return value;
  };
  return {word(16), word(20)};
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::istringstream text(read_text(path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(text, line);) lines.push_back(line);
  return lines;
}

void expect_refused(const Json& section, const DataSpec& spec, const std::string& key) {
  try {
    build_model(section, spec);
    ADD_FAILURE() << "accepted " << section.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

std::filesystem::path family_config_file(const std::string& family) {
  return std::filesystem::path(TORCHAE_SOURCE_DIR) / "tests" / "families" / (family + ".json");
}

const std::vector<std::string>& family_configs() {
  static const std::vector<std::string> configs = [] {
    std::vector<std::string> all;
    for (const auto* family : Registry::builtin().families()) {
      // Read before main(), while tests are listed: a missing or broken file leaves the family
      // out, for Families.EveryRegisteredFamilyHasTestConfigurations to report.
      try {
        for (const Json& config : load_json_file(family_config_file(family->name))) all.push_back(config.dump());
      } catch (const std::exception&) {
      }
    }
    return all;
  }();
  return configs;
}

bool have_fashion_mnist() {
  return std::filesystem::exists(std::filesystem::path(kFashionMnistDir) / "train-images-idx3-ubyte.gz");
}

}  // namespace torchae::test

// A process that failed nothing and whose tests were all skipped (CUDA's without a GPU) exits
// with 77, which CTest's SKIP_RETURN_CODE reports as skipped (tests/discover_groups.cmake); any
// other exits as gtest says.
int main(int argc, char** argv) {
  torchae::ensure_fast_runtime(argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int status = RUN_ALL_TESTS();
  const ::testing::UnitTest& run = *::testing::UnitTest::GetInstance();
  const bool all_skipped = run.skipped_test_count() > 0 && run.successful_test_count() == 0;
  return status == 0 && all_skipped ? 77 : status;
}
