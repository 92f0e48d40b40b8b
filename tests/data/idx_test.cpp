#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/data/dataset.h"
#include "torchae/data/idx.h"

#include <zlib.h>

namespace torchae {
namespace {

using test::TempDir;
using test::TorchaeTest;

void gzip_file(const std::filesystem::path& from, const std::filesystem::path& to, std::size_t keep_bytes = 0) {
  const std::string raw = read_text(from);
  gzFile out = gzopen(to.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  gzwrite(out, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(out);
  if (keep_bytes > 0) std::filesystem::resize_file(to, keep_bytes);
}

std::string error_of(const std::filesystem::path& path) {
  try {
    read_idx(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class Idx : public TorchaeTest {};

TEST_F(Idx, RoundTripsEveryElementType) {
  TempDir dir;
  for (auto dtype : {torch::kUInt8, torch::kInt8, torch::kInt16, torch::kInt32, torch::kFloat32, torch::kFloat64}) {
    const torch::Tensor t = (torch::rand({3, 4, 5}) * 100 - 50).to(dtype);
    write_idx(dir / "t.idx", t);
    const torch::Tensor back = read_idx(dir / "t.idx");
    EXPECT_EQ(back.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(back, t)) << dtype;
  }
}

TEST_F(Idx, ReadsGzipByContentAndRefusesTruncatedGzip) {
  TempDir dir;
  const torch::Tensor t = torch::randint(0, 255, {50, 28, 28}).to(torch::kUInt8);
  write_idx(dir / "raw", t);
  gzip_file(dir / "raw", dir / "named-without-suffix");
  EXPECT_TRUE(torch::equal(read_idx(dir / "named-without-suffix"), t));
  gzip_file(dir / "raw", dir / "cut.gz", 2000);
  const std::string message = error_of(dir / "cut.gz");
  EXPECT_NE(message.find("cut.gz"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

// A gzip bomb: a valid header announcing 10 small images, then 256 MiB of zeros (256 KiB
// compressed). The reader stops at the announced size and refuses the rest by name, rather
// than inflating it all first; a header that announces more than the file can inflate to is
// refused before anything is allocated.
TEST_F(Idx, StopsReadingAtTheSizeTheHeaderAnnounces) {
  TempDir dir;
  write_idx(dir / "head", torch::zeros({10, 28, 28}, torch::kUInt8));
  const std::string head = read_text(dir / "head");
  gzFile out = gzopen((dir / "bomb.gz").c_str(), "wb9");
  gzwrite(out, head.data(), static_cast<unsigned>(head.size()));
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 256; ++i) gzwrite(out, zeros.data(), static_cast<unsigned>(zeros.size()));
  gzclose(out);
  EXPECT_LT(std::filesystem::file_size(dir / "bomb.gz"), 1u << 20);
  EXPECT_NE(error_of(dir / "bomb.gz").find("trailing bytes: the header announces 7840 bytes of data, the file holds more"),
            std::string::npos);

  std::string huge = head.substr(0, 16);
  huge[4] = '\x01';  // 16,777,226 images of 28 x 28 (13 GB), in a file of a few dozen bytes
  write_text_atomically(dir / "huge", huge);
  gzip_file(dir / "huge", dir / "huge.gz");
  EXPECT_NE(error_of(dir / "huge.gz").find("truncated: the header announces"), std::string::npos);
  EXPECT_NE(error_of(dir / "huge").find("truncated: the header announces"), std::string::npos);
}

TEST_F(Idx, RefusesTruncatedTrailingAndForeignFiles) {
  TempDir dir;
  write_idx(dir / "t.idx", torch::zeros({10, 7}, torch::kUInt8));
  std::filesystem::resize_file(dir / "t.idx", 4 + 8 + 69);
  EXPECT_NE(error_of(dir / "t.idx").find("truncated: the header announces 70 bytes of data, the file holds 69"),
            std::string::npos);
  std::filesystem::resize_file(dir / "t.idx", 4 + 8 + 71);
  EXPECT_NE(error_of(dir / "t.idx").find("trailing bytes"), std::string::npos);
  write_text_atomically(dir / "text.idx", "hello, world");
  EXPECT_NE(error_of(dir / "text.idx").find("bad magic number"), std::string::npos);
  write_text_atomically(dir / "type.idx", std::string("\0\0\x07\x01\0\0\0\0", 8));
  EXPECT_NE(error_of(dir / "type.idx").find("unknown IDX element type 0x07"), std::string::npos);
  EXPECT_NE(error_of(dir / "absent.idx").find("no such file"), std::string::npos);
}

// Writes a small MNIST-layout directory: images 0..255 patterns, labels i % 10.
void write_mnist_dir(const std::filesystem::path& dir, int64_t n_train, int64_t n_test) {
  for (auto [prefix, n] : {std::pair{"train", n_train}, {"t10k", n_test}}) {
    write_idx(dir / (std::string(prefix) + "-images-idx3-ubyte"), torch::randint(0, 256, {n, 6, 5}).to(torch::kUInt8));
    write_idx(dir / (std::string(prefix) + "-labels-idx1-ubyte"), (torch::arange(n) % 10).to(torch::kUInt8));
  }
}

TEST_F(Idx, LoadsAnMnistDirectoryWithLimitAndValidationSplit) {
  TempDir dir;
  write_mnist_dir(dir.path(), 200, 30);
  DataOptions options;
  options.dataset = "idx";
  options.path = dir.path().string();
  options.limit = 100;
  options.validation_fraction = 0.2;
  const DataSplits splits = load_data(options, /*with_test=*/true);
  EXPECT_EQ(splits.train.size(), 80);
  EXPECT_EQ(splits.validation.size(), 20);
  EXPECT_EQ(splits.test.size(), 30);
  EXPECT_EQ(splits.spec.shape, (std::vector<int64_t>{1, 6, 5}));
  EXPECT_EQ(splits.train.inputs.scalar_type(), torch::kFloat32);
  EXPECT_GE(splits.train.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(splits.train.inputs.max().item<float>(), 1.0f);
  // The two splits partition the first 100 examples: their labels (i % 10) sum as 0..99's do.
  const int64_t label_sum = splits.train.labels.sum().item<int64_t>() + splits.validation.labels.sum().item<int64_t>();
  EXPECT_EQ(label_sum, (torch::arange(100) % 10).sum().item<int64_t>());
  // The split does not depend on anything but the data: loading again gives the same one.
  EXPECT_TRUE(torch::equal(load_data(options, false).validation.inputs, splits.validation.inputs));
}

// Data that would only fail later, or silently give nonsense, is refused when it is loaded.
TEST_F(Idx, RefusesTestImagesOfAnotherSizeAndLabelsOutsideTheClasses) {
  TempDir dir;
  write_mnist_dir(dir.path(), 100, 10);
  DataOptions options;
  options.dataset = "idx";
  options.path = dir.path().string();
  auto error = [&] {
    try {
      load_data(options, /*with_test=*/true);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error(), "(no error)");
  write_idx(dir / "t10k-labels-idx1-ubyte", torch::full({10}, 12).to(torch::kUInt8));
  EXPECT_EQ(error(), (dir / "t10k-labels-idx1-ubyte").string() +
                         ": label 12 is not a class of the training labels (0 to 9)");
  write_idx(dir / "t10k-labels-idx1-ubyte", torch::full({10}, -1).to(torch::kInt32));
  EXPECT_EQ(error(), (dir / "t10k-labels-idx1-ubyte").string() + ": label -1 is negative; labels number the classes from 0");
  write_idx(dir / "t10k-labels-idx1-ubyte", torch::zeros({10}, torch::kFloat32));
  EXPECT_EQ(error(), (dir / "t10k-labels-idx1-ubyte").string() + ": expected integer labels, got Float");
  write_idx(dir / "t10k-labels-idx1-ubyte", torch::zeros({10}).to(torch::kUInt8));
  write_idx(dir / "t10k-images-idx3-ubyte", torch::zeros({10, 5, 6}).to(torch::kUInt8));
  EXPECT_EQ(error(), (dir / "t10k-images-idx3-ubyte").string() +
                         ": the test images are 5x6, the training images 6x5; they must be the same size");
}

TEST_F(Idx, CentringSubtractsTheTrainingMean) {
  TempDir dir;
  write_mnist_dir(dir.path(), 100, 10);
  DataOptions options;
  options.dataset = "idx";
  options.path = dir.path().string();
  options.center = true;
  const DataSplits splits = load_data(options, true);
  EXPECT_LT(splits.train.inputs.mean(0).abs().max().item<float>(), 1e-6f);
  EXPECT_LT(splits.spec.min, 0.0);
  EXPECT_DOUBLE_EQ(splits.spec.peak, 1.0);
}

TEST_F(Idx, MissingDirectoryIsAClearError) {
  DataOptions options;
  options.dataset = "idx";
  options.path = "/nonexistent/mnist";
  try {
    load_data(options, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/mnist: no train-images-idx3-ubyte"), std::string::npos);
  }
}

TEST_F(Idx, BatchesCoverEveryExampleOnceWithOneIndexSelectEach) {
  Dataset data{torch::arange(10, torch::kFloat32).view({10, 1}), torch::arange(10)};
  const torch::Tensor order = torch::randperm(10, torch::kLong);
  Batches batches(data, 4, order);
  ASSERT_EQ(batches.size(), 3);
  EXPECT_EQ(batches.inputs(2).size(0), 2);
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < batches.size(); ++i) parts.push_back(batches.inputs(i).flatten());
  EXPECT_TRUE(torch::equal(torch::cat(parts), order.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(batches.at(1).labels, order.narrow(0, 4, 4)));
}

TEST_F(Idx, FashionMnistIsThereAndWellFormed) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  DataOptions options;
  const DataSplits splits = load_data(options, /*with_test=*/true);
  EXPECT_EQ(splits.train.size() + splits.validation.size(), 60000);
  EXPECT_EQ(splits.validation.size(), 6000);
  EXPECT_EQ(splits.test.size(), 10000);
  EXPECT_EQ(splits.spec.shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(splits.test.labels.max().item<int64_t>(), 9);
}

}  // namespace
}  // namespace torchae
