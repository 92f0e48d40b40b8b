// Every kept fuzzing input, run through its target in the ordinary build: the seeds
// (tests/fuzz/corpus/<target>/) and the inputs that made a target fail before it was fixed
// (tests/fuzz/crashes/<target>/). A target accepts an input or refuses it with an Error; a crash
// or any other exception fails the test.

#include "test_tools.h"

#include "fuzz/targets.h"
#include "torchae/core/io.h"

namespace torchae {
namespace {

std::vector<std::filesystem::path> kept_inputs(const std::string& target) {
  std::vector<std::filesystem::path> files;
  for (const char* kind : {"corpus", "crashes"}) {
    const std::filesystem::path dir = std::filesystem::path(TORCHAE_SOURCE_DIR) / "tests/fuzz" / kind / target;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class FuzzInputs : public test::TorchaeTest, public ::testing::WithParamInterface<fuzz::Target> {};

TEST_P(FuzzInputs, EveryKeptInputIsAcceptedOrRefusedWithAnError) {
  const auto files = kept_inputs(GetParam().name);
  ASSERT_FALSE(files.empty()) << "no seeds in tests/fuzz/corpus/" << GetParam().name;
  for (const auto& file : files) {
    const std::string bytes = read_text(file);
    EXPECT_NO_THROW(GetParam().run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())) << file;
  }
}

INSTANTIATE_TEST_SUITE_P(Fuzz, FuzzInputs, ::testing::ValuesIn(fuzz::targets()),
                         [](const ::testing::TestParamInfo<fuzz::Target>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace torchae
