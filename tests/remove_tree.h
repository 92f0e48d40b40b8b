#pragma once

#include <ftw.h>

#include <cstdio>
#include <filesystem>

namespace torchae::test {

/// Removes `path` and everything under it, quietly (what is not there is not an error). Not
/// std::filesystem::remove_all: PyTorch's pip wheels (2.11 at least) export a copy of it from
/// libtorch.so that jumps to address 0, and the dynamic linker binds the tests to it.
inline void remove_tree(const std::filesystem::path& path) {
  nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
       FTW_DEPTH | FTW_PHYS);
}

}  // namespace torchae::test
