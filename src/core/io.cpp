#include "torchae/core/io.h"

#include "torchae/core/error.h"

#include <fmt/format.h>

#include <cerrno>
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

void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path& tmp)>& write) {
  namespace fs = std::filesystem;
  refuse_other_than_regular(path, path.string());
  const fs::path tmp = path.string() + fmt::format(".tmp.{}", ::getpid());
  try {
    write(tmp);
    fs::rename(tmp, path);
  } catch (const fs::filesystem_error& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error(fmt::format("cannot write {}: {}", path.string(), e.code().message()));
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      throw Error(fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
    }
  });
}

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
