#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace torchae {

/// Files of a run directory.
inline constexpr const char* kCheckpointFile = "checkpoint.pt";
inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kEvalFile = "eval.json";

/// Checks an output a user named with `option` before any work is done: an Error when `out`
/// exists and is not a regular file (what `write_atomically` refuses to replace), or is one of
/// the files of a run directory (one that holds config.json), which an export or a picture
/// written there would destroy.
void check_output_path(const std::filesystem::path& out, const std::string& option);

/// Writes a file so that a reader never sees it half-written: `write` fills a temporary file
/// beside `path`, which then replaces `path` by rename. If `write` throws, `path` is untouched.
/// Only a regular file is replaced: when `path` is a symbolic link, a directory, a device, a
/// FIFO or a socket, it is an Error and nothing is written.
///
///   write_atomically(dir / "checkpoint.pt", [&](const auto& tmp) { torch::save(t, tmp.string()); });
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path& tmp)>& write);

/// `write_atomically` for text.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

/// Reads a whole file; throws Error naming the file when it cannot.
std::string read_text(const std::filesystem::path& path);

/// An exclusive claim on a run directory for as long as the object lives: a lock (flock) on
/// the directory itself, so the run directory holds no extra file, and the claim goes with the
/// process however it ends. A second claim, by another process or in this one, fails at once
/// with an Error naming the directory: two trainings, or a training and a resume, never write
/// the same run.
///
///   RunClaim claim(run_dir);   // throws when another process holds it
class RunClaim {
 public:
  explicit RunClaim(const std::filesystem::path& dir);
  ~RunClaim();
  RunClaim(const RunClaim&) = delete;
  RunClaim& operator=(const RunClaim&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace torchae
