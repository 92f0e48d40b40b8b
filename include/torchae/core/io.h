#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

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

/// Files replaced together, so that a reader never sees one half-written and never sees them
/// out of step: `add` writes each one's new content, through `write`, to a temporary file
/// beside it (`<path>.tmp.<pid>`, written and synced); `commit` then renames each over its
/// target, in the order added. Until `commit` nothing is replaced; an object destroyed
/// without it (a write failed) removes its temporary files. Only regular files are replaced:
/// a target that is a symbolic link, a directory, a device, a FIFO or a socket is an Error and
/// nothing is written.
///
/// A failed write (a full disk) is an Error naming the file and the cause, thrown by `add`
/// once the writer has returned: `write` is given a stream that never fails, since LibTorch's
/// archive writers cannot unwind from a failed write (their destructor writes again, and the
/// second exception aborts the process). Temporary files left by processes that no longer
/// run (killed while writing) are removed when the same target is written again.
///
///   AtomicFiles files;
///   files.add(dir / "metrics.jsonl", [&](std::ostream& out) { out << lines; });
///   files.add(dir / "checkpoint.pt", [&](std::ostream& out) { archive.save_to(out); });
///   files.commit();
class AtomicFiles {
 public:
  using Writer = std::function<void(std::ostream& out)>;
  AtomicFiles() = default;
  ~AtomicFiles();
  AtomicFiles(const AtomicFiles&) = delete;
  AtomicFiles& operator=(const AtomicFiles&) = delete;

  void add(const std::filesystem::path& path, const Writer& write);
  void commit();

 private:
  struct Pending {
    std::filesystem::path path, tmp;
  };
  std::vector<Pending> pending_;
};

/// One file written as `AtomicFiles` writes it: if `write` throws or the disk is full, `path`
/// is untouched.
///
///   write_atomically(dir / "eval.json", [&](std::ostream& out) { out << metrics.dump(2); });
void write_atomically(const std::filesystem::path& path, const AtomicFiles::Writer& write);

/// `write_atomically` for text.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

/// Removes the temporary files (`*.tmp.<pid>`) that processes no longer running left in
/// `dir` (a run directory, when it is claimed for training). Returns how many it removed.
int remove_stale_temporaries(const std::filesystem::path& dir);

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
