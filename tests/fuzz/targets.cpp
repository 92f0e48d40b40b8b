#include "fuzz/targets.h"

#include "remove_tree.h"

#include "torchae/core/config.h"
#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/data/dataset.h"
#include "torchae/data/idx.h"
#include "torchae/data/images.h"
#include "torchae/export/export.h"
#include "torchae/hashing/index.h"
#include "torchae/models/registry.h"
#include "torchae/train/trainer.h"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <unistd.h>

namespace torchae::fuzz {

namespace {

// A directory of this process's own for the files the readers are given, removed at exit (by
// the destructor of the static that holds it: an atexit handler registered while the static was
// being built would run after the static is gone, and remove nothing).
struct Scratch {
  std::filesystem::path dir;
  Scratch() {
    const char* base = std::getenv("TMPDIR");
    std::string name = std::string(base && *base ? base : "/tmp") + "/torchae_fuzz_XXXXXX";
    if (::mkdtemp(name.data()) == nullptr) std::abort();
    dir = name;
  }
  ~Scratch() { test::remove_tree(dir); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

const std::filesystem::path& scratch() {
  static const Scratch s;
  return s.dir;
}

void write_bytes(const std::filesystem::path& path, const uint8_t* data, std::size_t size) {
  write_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  });
}

// Whether every integer in `value` is at most `limit` and every list at most 8 long: a model
// of such sizes builds in milliseconds (the allocation of huge ones has its own test).
bool small(const Json& value, int64_t limit) {
  if (value.is_number_integer()) return value.get<int64_t>() <= limit;
  if (value.is_number_unsigned()) return false;
  if (value.is_array() && value.size() > 8) return false;
  if (value.is_array() || value.is_object()) {
    for (const auto& item : value) {
      if (!small(item, limit)) return false;
    }
  }
  return true;
}

// The input as a file `name`, given to `read`; an Error is a refusal, and fine.
void through_file(const char* name, const uint8_t* data, std::size_t size,
                  const std::function<void(const std::filesystem::path&)>& read) {
  const auto path = scratch() / name;
  write_bytes(path, data, size);
  try {
    read(path);
  } catch (const Error&) {
  }
}

}  // namespace

void idx(const uint8_t* data, std::size_t size) {
  through_file("input.idx", data, size, [](const std::filesystem::path& path) { read_idx(path); });
}

void config(const uint8_t* data, std::size_t size) {
  std::istringstream lines(std::string(reinterpret_cast<const char*>(data), size));
  std::string first;
  std::getline(lines, first);
  try {
    Json config = parse_json(first, "fuzz");
    for (std::string line; std::getline(lines, line);) apply_override(config, line);
    if (!config.is_object()) return;
    const Json none = Json::object();
    auto section = [&](const char* name) -> const Json& { return config.contains(name) ? config.at(name) : none; };
    OptionReader data_reader(section("data"), "data");
    DataOptions::from(data_reader);
    OptionReader train_reader(section("train"), "train");
    TrainOptions::from(train_reader);
    if (small(section("model"), 64)) {
      DataSpec spec;
      spec.shape = {1, 8, 8};
      build_model(section("model"), spec);
    }
  } catch (const Error&) {
  }
}

void image_folder(const uint8_t* data, std::size_t size) {
  if (size < 2) return;
  const auto dir = scratch() / "images";
  std::filesystem::create_directories(dir);
  const std::size_t cut = 1 + static_cast<std::size_t>(data[0]) * (size - 1) / 256;
  write_bytes(dir / "a.png", data + 1, cut - 1);
  write_bytes(dir / "b.png", data + cut, size - cut);
  DataOptions options;
  options.dataset = "images";
  options.path = dir.string();
  options.patch = 4;
  options.patches = 4;
  options.channels = (data[0] & 1) ? 3 : 1;
  options.test_images = {"b.png"};
  try {
    load_data(options, /*with_test=*/true);
  } catch (const Error&) {
  }
}

void model_card(const uint8_t* data, std::size_t size) {
  through_file("model.pt", data, size, [](const std::filesystem::path& path) { read_model_card(path); });
}

void hash_index(const uint8_t* data, std::size_t size) {
  through_file("a.index", data, size, [](const std::filesystem::path& path) { read_index(path); });
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all{{"idx", idx},
                                       {"config", config},
                                       {"image_folder", image_folder},
                                       {"model_card", model_card},
                                       {"hash_index", hash_index}};
  return all;
}

}  // namespace torchae::fuzz
