// Files torchae writes: atomic replacement, full disks (on a real tmpfs), stale temporary files.

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/train/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

namespace torchae {
namespace {

using test::CliResult;
using test::expect_one_line_error;
using test::run_cli;
using test::TempDir;

// The names in `dir`, sorted.
std::vector<std::string> entries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The pid of a process that has exited (and been reaped): what a killed torchae leaves in the
// names of its temporary files.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

TEST(WriteAtomically, LeavesTheOldFileWhenTheWriterFails) {
  TempDir dir;
  write_text_atomically(dir / "f.txt", "good");
  EXPECT_THROW(write_atomically(dir / "f.txt",
                                [](std::ostream& out) {
                                  out << "half";
                                  throw Error("the writer failed");
                                }),
               Error);
  EXPECT_EQ(read_text(dir / "f.txt"), "good");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"f.txt"}) << "the temporary file must be removed";
}

TEST(AtomicFiles, ReplacesNothingUntilCommitAndNothingWhenOneWriteFails) {
  TempDir dir;
  write_text_atomically(dir / "a", "old a");
  write_text_atomically(dir / "b", "old b");
  {
    AtomicFiles files;
    files.add(dir / "a", [](std::ostream& out) { out << "new a"; });
    EXPECT_EQ(read_text(dir / "a"), "old a");
    EXPECT_THROW(files.add(dir / "b", [](std::ostream&) { throw Error("the writer failed"); }), Error);
  }
  EXPECT_EQ(read_text(dir / "a"), "old a");
  EXPECT_EQ(read_text(dir / "b"), "old b");
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"a", "b"}));
  AtomicFiles files;
  files.add(dir / "a", [](std::ostream& out) { out << "new a"; });
  files.add(dir / "b", [](std::ostream& out) { out << std::string(200000, 'b'); });
  files.commit();
  EXPECT_EQ(read_text(dir / "a"), "new a");
  EXPECT_EQ(read_text(dir / "b").size(), 200000u);
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"a", "b"}));
}

// Temporary files of processes that no longer run are removed; those of a running one stay.
TEST(AtomicFiles, RemovesStaleTemporaryFilesOfTheTarget) {
  TempDir dir;
  const std::string dead = std::to_string(dead_pid()), alive = std::to_string(::getppid());
  for (const std::string& name : std::vector<std::string>{"f.tmp." + dead, "f.tmp." + alive, "other.tmp." + dead, "f.tmp.x"}) {
    write_text_atomically(dir / name, "left behind");
  }
  write_text_atomically(dir / "f", "new");
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"f", "f.tmp." + alive, "f.tmp.x", "other.tmp." + dead}));
  EXPECT_EQ(remove_stale_temporaries(dir.path()), 1);
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"f", "f.tmp." + alive, "f.tmp.x"}));
}

// A real tmpfs of a given size mounted on a temporary directory, for the full-disk cases.
// Mounting needs root (CI has it); elsewhere these tests are skipped, saying why.
class FullDisk : public test::TorchaeTest {
 protected:
  void mount(const std::string& size) {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root, which CI has";
    if (::mount("tmpfs", disk_.path().c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    mounted_ = true;
  }
  // Makes the mounted disk `size` large (a remount keeps what it holds).
  void grow(const std::string& size) {
    ASSERT_EQ(::mount(nullptr, disk_.path().c_str(), nullptr, MS_REMOUNT, ("size=" + size).c_str()), 0)
        << std::strerror(errno);
  }
  void TearDown() override {
    if (mounted_) ::umount2(disk_.path().c_str(), MNT_DETACH);
  }
  const std::filesystem::path& disk() const { return disk_.path(); }

 private:
  TempDir disk_;
  bool mounted_ = false;
};

TEST_F(FullDisk, AWriteThatDoesNotFitIsAnErrorAndLeavesTheOldFile) {
  mount("256k");
  if (IsSkipped()) return;
  write_text_atomically(disk() / "f", "old");
  try {
    write_text_atomically(disk() / "f", std::string(1 << 20, 'x'));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + (disk() / "f").string() + ": No space left on device");
  }
  // LibTorch's archive writer aborts the process when its file stream fails; through
  // write_atomically it is an error like any other.
  try {
    write_atomically(disk() / "t.pt", [](std::ostream& out) { torch::save(torch::zeros({1 << 18}), out); });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.pt: No space left on device"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_text(disk() / "f"), "old");
  EXPECT_EQ(entries(disk()), std::vector<std::string>{"f"});
}

// Training into a disk that fills up: one line naming the file and the cause, the last
// checkpoint kept, metrics.jsonl consistent with it, no temporary file left.
TEST_F(FullDisk, TrainingStopsWithOneLineAndKeepsTheLastCheckpointAndItsMetrics) {
  ASSERT_TRUE(test::have_fashion_mnist());
  TempDir measure;
  const std::string small = test::kSmallRun + " --set train.progress=none";
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", small, (measure / "run").string())).exit_code, 0);
  // Room for one checkpoint and a half: the first epoch's is written, the second's is not.
  const auto checkpoint_size = std::filesystem::file_size(measure / "run" / kCheckpointFile);
  mount(std::to_string(checkpoint_size * 3 / 2 + 64 * 1024));
  if (IsSkipped()) return;
  const std::filesystem::path run = disk() / "run";
  const CliResult r = run_cli(fmt::format("train {} --set train.epochs=3 --out {}", small, run.string()));
  expect_one_line_error(r, "cannot write " + (run / kCheckpointFile).string() + ": No space left on device");
  EXPECT_EQ(checkpoint_position(run).epoch, 1);
  EXPECT_EQ(test::read_lines(run / kMetricsFile).size(), 1u);
  EXPECT_EQ(entries(run), (std::vector<std::string>{kCheckpointFile, kConfigFile, kMetricsFile}));
  // Given room, the run goes on from there.
  grow("16m");
  const CliResult resumed = run_cli("train --resume " + run.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto lines = test::read_lines(run / kMetricsFile);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Json::parse(lines[2])["epoch"], 3);
}

TEST_F(FullDisk, ExportIntoAFullDiskIsOneLineAndLeavesNothing) {
  ASSERT_TRUE(test::have_fashion_mnist());
  TempDir dir;
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --set train.progress=none --out {}", test::kSmallRun,
                                (dir / "run").string()))
                .exit_code,
            0);
  mount("64k");
  if (IsSkipped()) return;
  const std::filesystem::path out = disk() / "model.pt";
  expect_one_line_error(run_cli(fmt::format("export --run {} --out {}", (dir / "run").string(), out.string())),
                        "cannot write " + out.string() + ": No space left on device");
  EXPECT_TRUE(entries(disk()).empty());
}

// A killed process's temporary files in a run directory go when the run is trained again.
TEST(RunDirectory, StaleTemporaryFilesAreRemovedOnResume) {
  ASSERT_TRUE(test::have_fashion_mnist());
  TempDir dir;
  const std::filesystem::path run = dir / "run";
  const std::string small = test::kSmallRun + " --set train.progress=none";
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", small, run.string())).exit_code, 0);
  const std::string dead = std::to_string(dead_pid());
  for (const char* file : {kCheckpointFile, kEvalFile}) write_text_atomically(run / (file + (".tmp." + dead)), "x");
  ASSERT_EQ(run_cli(fmt::format("train --resume {} --set train.epochs=2", run.string())).exit_code, 0);
  EXPECT_EQ(entries(run), (std::vector<std::string>{kCheckpointFile, kConfigFile, kMetricsFile}));
}

}  // namespace
}  // namespace torchae
