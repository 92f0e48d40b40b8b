#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace torchae {

/// Writes a file so that a reader never sees it half-written: `write` fills a temporary file
/// beside `path`, which then replaces `path` by rename. If `write` throws, `path` is untouched.
///
///   write_atomically(dir / "checkpoint.pt", [&](const auto& tmp) { torch::save(t, tmp.string()); });
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path& tmp)>& write);

/// `write_atomically` for text.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

/// Reads a whole file; throws Error naming the file when it cannot.
std::string read_text(const std::filesystem::path& path);

}  // namespace torchae
