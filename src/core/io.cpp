#include "torchae/core/io.h"

#include "torchae/core/error.h"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <fcntl.h>
#include <sstream>
#include <sys/file.h>
#include <unistd.h>

namespace torchae {

namespace {

// What a file system entry is, in words, for messages.
std::string kind_of(const std::filesystem::file_status& status) {
  namespace fs = std::filesystem;
  switch (status.type()) {
    case fs::file_type::symlink: return "a symbolic link";
    case fs::file_type::directory: return "a directory";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

// Throws "<named>: is a FIFO; ..." when `path` exists and is not a regular file.
void refuse_other_than_regular(const std::filesystem::path& path, const std::string& named) {
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::symlink_status(path, ec);
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
    throw Error(fmt::format("{}: is {}; torchae replaces only regular files", named, kind_of(status)));
  }
}

}  // namespace

void check_output_path(const std::filesystem::path& out, const std::string& option) {
  namespace fs = std::filesystem;
  refuse_other_than_regular(out, option + " " + out.string());
  std::error_code ec;
  const std::string name = out.filename().string();
  const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  for (const char* file : {kConfigFile, kCheckpointFile, kMetricsFile, kEvalFile}) {
    if (name == file && fs::exists(dir / kConfigFile, ec)) {
      throw Error(fmt::format("{} {}: that is the {} of the run in {}; write it elsewhere", option, out.string(), file,
                              dir.string()));
    }
  }
}

namespace {

// The stream a writer of `AtomicFiles` is given: bytes go to a file descriptor through a
// buffer, and the first failed write is remembered (`error`) instead of reported to the
// stream, which goes on accepting and dropping bytes.
class FileSink : public std::streambuf {
 public:
  explicit FileSink(int fd) : fd_(fd) { setp(buffer_.data(), buffer_.data() + buffer_.size()); }
  int error() const { return error_; }
  // Flushes what is buffered and syncs the file to disk.
  void finish() {
    drain();
    if (error_ == 0 && ::fdatasync(fd_) != 0) error_ = errno;
  }

 protected:
  int_type overflow(int_type c) override {
    drain();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* data, std::streamsize n) override {
    if (n > epptr() - pptr()) {
      drain();
      put(data, static_cast<std::size_t>(n));
      return n;
    }
    std::memcpy(pptr(), data, static_cast<std::size_t>(n));
    pbump(static_cast<int>(n));
    return n;
  }
  int sync() override {
    drain();
    return 0;
  }

 private:
  void drain() {
    put(pbase(), static_cast<std::size_t>(pptr() - pbase()));
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }
  void put(const char* data, std::size_t n) {
    while (n > 0 && error_ == 0) {
      const ssize_t written = ::write(fd_, data, n);
      if (written < 0) {
        if (errno != EINTR) error_ = errno;
        continue;
      }
      data += written;
      n -= static_cast<std::size_t>(written);
    }
  }

  int fd_;
  int error_ = 0;
  std::array<char, 1 << 16> buffer_{};
};

constexpr const char* kTemporaryInfix = ".tmp.";

// Whether process `pid` runs (or exists under another user: not ours to judge).
bool process_runs(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// The process that left a temporary file `name` (`<target>.tmp.<pid>`), or 0 when `name` is not
// one, or (when `target` is not empty) not one of `target`.
long temporary_owner(const std::string& name, const std::string& target) {
  const std::size_t at = name.rfind(kTemporaryInfix);
  if (at == std::string::npos || at == 0 || (!target.empty() && name.compare(0, at, target) != 0)) return 0;
  const std::string digits = name.substr(at + std::strlen(kTemporaryInfix));
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::stol(digits);
}

// Removes the temporary files in `dir` (of `target` only, when not empty) whose process no longer
// runs.
int remove_stale(const std::filesystem::path& dir, const std::string& target) {
  int removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const long pid = temporary_owner(it->path().filename().string(), target);
    if (pid <= 0 || pid == ::getpid() || process_runs(pid)) continue;
    std::error_code ignored;
    if (it->is_regular_file(ignored) && ::unlink(it->path().c_str()) == 0) ++removed;
  }
  return removed;
}

[[noreturn]] void throw_write_error(const std::filesystem::path& path, int error) {
  throw Error(fmt::format("cannot write {}: {}", path.string(), std::strerror(error)));
}

}  // namespace

AtomicFiles::~AtomicFiles() {
  for (const Pending& file : pending_) ::unlink(file.tmp.c_str());
}

void AtomicFiles::add(const std::filesystem::path& path, const Writer& write) {
  refuse_other_than_regular(path, path.string());
  const std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  remove_stale(dir, path.filename().string());
  const std::filesystem::path tmp = path.string() + kTemporaryInfix + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_write_error(path, errno);
  pending_.push_back({path, tmp});  // from here on, the destructor removes it
  FileSink sink(fd);
  try {
    std::ostream out(&sink);
    write(out);
    out.flush();
  } catch (...) {
    ::close(fd);
    throw;
  }
  sink.finish();
  int error = sink.error();
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) throw_write_error(path, error);
}

void AtomicFiles::commit() {
  while (!pending_.empty()) {
    const Pending& file = pending_.front();
    if (::rename(file.tmp.c_str(), file.path.c_str()) != 0) throw_write_error(file.path, errno);
    pending_.erase(pending_.begin());
  }
}

void write_atomically(const std::filesystem::path& path, const AtomicFiles::Writer& write) {
  AtomicFiles file;
  file.add(path, write);
  file.commit();
}

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  write_atomically(path, [&](std::ostream& out) { out << text; });
}

int remove_stale_temporaries(const std::filesystem::path& dir) { return remove_stale(dir, {}); }

std::string read_text(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error(fmt::format("{}: is a directory, expected a file", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("{}: read error", path.string()));
  return text.str();
}

RunClaim::RunClaim(const std::filesystem::path& dir) {
  fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) throw Error(fmt::format("cannot open {}: {}", dir.string(), std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    if (error == EWOULDBLOCK) {
      throw Error(fmt::format("{} is in use: another torchae process is training it", dir.string()));
    }
    throw Error(fmt::format("cannot lock {}: {}", dir.string(), std::strerror(error)));
  }
}

RunClaim::~RunClaim() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock
}

}  // namespace torchae
