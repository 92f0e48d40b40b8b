#pragma once

// The fuzz targets: each takes one input of libFuzzer's and feeds it to one of torchae's
// readers, which must either accept it or refuse it with an Error, never crash, hang or throw
// anything else. The libFuzzer programs (fuzz_main.cpp, built by scripts/fuzz.sh) call them, and
// so does the test suite, over the seeds and the inputs fuzzing found (tests/fuzz/<target>/).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace torchae::fuzz {

/// The IDX reader (`read_idx`): the input is a file, raw or gzip-compressed.
void idx(const uint8_t* data, std::size_t size);
/// The config reader: the input's first line is a configuration as JSON (`parse_json`), each
/// further line a `--set` assignment (`apply_override`); the result is resolved section by
/// section as `train` would, without loading data (the model built on 8x8 inputs when its
/// sizes are small).
void config(const uint8_t* data, std::size_t size);
/// The image-folder reader (`load_image_folder`): the input is cut in two files of a folder,
/// one trained on and one held out, by its first byte.
void image_folder(const uint8_t* data, std::size_t size);
/// The model-card reader (`read_model_card`): the input is an archive.
void model_card(const uint8_t* data, std::size_t size);
/// The index reader of semantic hashing (`read_index`): the input is an index file.
void hash_index(const uint8_t* data, std::size_t size);

struct Target {
  const char* name;
  void (*run)(const uint8_t* data, std::size_t size);
};
/// Every target, by the name of its folder under tests/fuzz and of its program (fuzz_<name>).
const std::vector<Target>& targets();

}  // namespace torchae::fuzz
