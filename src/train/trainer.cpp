#include "torchae/train/trainer.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/core/runtime.h"
#include "torchae/nn/fused.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace torchae {

TrainOptions TrainOptions::from(OptionReader& r) {
  TrainOptions o;
  o.epochs = r.integer("epochs", o.epochs, at_least(1));
  o.batch_size = r.integer("batch_size", o.batch_size, at_least(1));
  o.lr = r.number("lr", o.lr, greater_than(0));
  o.seed = r.integer("seed", o.seed, at_least(0));
  o.device = r.string("device", o.device);
  o.optimizer = r.choice("optimizer", o.optimizer, {"adam", "sgd"});
  o.beta1 = r.number("beta1", o.beta1, Bound{0, 1, false, true});
  o.beta2 = r.number("beta2", o.beta2, Bound{0, 1, false, true});
  o.momentum = r.number("momentum", o.momentum, Bound{0, 1, false, true});
  o.nesterov = r.boolean("nesterov", o.nesterov);
  r.require(!o.nesterov || (o.optimizer == "sgd" && o.momentum > 0), "nesterov",
            "Nesterov momentum needs optimizer sgd with momentum > 0");
  o.weight_decay = r.number("weight_decay", o.weight_decay, at_least(0));
  o.schedule = r.choice("schedule", o.schedule, {"none", "step", "cosine"});
  o.step_size = r.integer("step_size", o.step_size, at_least(1));
  o.gamma = r.number("gamma", o.gamma, Bound{0, 1, true, false});
  o.min_lr = r.number("min_lr", o.min_lr, at_least(0));
  r.require(o.schedule != "cosine" || o.min_lr <= o.lr, "min_lr",
            fmt::format("must not exceed train.lr ({}) with schedule cosine, which anneals from lr down to min_lr; "
                        "got {}",
                        o.lr, o.min_lr));
  o.clip_grad_norm = r.number("clip_grad_norm", o.clip_grad_norm, at_least(0));
  o.patience = r.integer("patience", o.patience, at_least(0));
  o.min_delta = r.number("min_delta", o.min_delta, at_least(0));
  o.validate_corrupted = r.boolean("validate_corrupted", o.validate_corrupted);
  o.augment = r.choice("augment", o.augment, {"none", "flip", "dihedral"});
  o.init = r.string("init", o.init);
  o.threads = r.integer("threads", o.threads, between(0, 1024));
  if (const Json* blas = r.raw("blas_threads"); blas && blas->is_string()) {
    r.require(blas->get<std::string>() == "auto", "blas_threads",
              fmt::format("expected an integer in [0, 1024] or \"auto\", got {}", blas->dump()));
    o.blas_threads = kAutoBlasThreads;
    r.resolve("blas_threads", "auto");
  } else {
    o.blas_threads = r.integer("blas_threads", o.blas_threads, between(0, 1024));
  }
  o.paired_products = r.boolean("paired_products", o.paired_products);
  o.progress = r.choice("progress", o.progress, {"auto", "lines", "none"});
  r.finish();
  return o;
}

Json TrainOptions::to_json() const {
  return {{"epochs", epochs},       {"batch_size", batch_size},
          {"lr", lr},               {"seed", seed},
          {"device", device},       {"optimizer", optimizer},
          {"beta1", beta1},         {"beta2", beta2},
          {"momentum", momentum},   {"nesterov", nesterov},
          {"weight_decay", weight_decay}, {"schedule", schedule},
          {"step_size", step_size}, {"gamma", gamma},
          {"min_lr", min_lr},       {"clip_grad_norm", clip_grad_norm},
          {"patience", patience},   {"min_delta", min_delta},
          {"validate_corrupted", validate_corrupted}, {"augment", augment},
          {"init", init},
          {"threads", threads},     {"progress", progress},
          {"paired_products", paired_products},
          {"blas_threads", blas_threads == kAutoBlasThreads ? Json("auto") : Json(blas_threads)}};
}

BlasThreadTuner::BlasThreadTuner(int64_t threads, int64_t warmup, int64_t rounds, int64_t steps_per_turn)
    : warmup_(warmup), rounds_(rounds), steps_per_turn_(steps_per_turn) {
  TORCH_CHECK(threads >= 1 && warmup >= 0 && rounds >= 1 && steps_per_turn >= 1, "BlasThreadTuner: bad schedule");
  for (int64_t n = threads; n > 1; n /= 2) candidates_.push_back(n);
  candidates_.push_back(1);
}

std::size_t BlasThreadTuner::candidate_at(std::size_t step) const {
  const auto warmup = static_cast<std::size_t>(warmup_);
  if (step < warmup) return 0;
  const std::size_t turn = (step - warmup) / static_cast<std::size_t>(steps_per_turn_);
  const std::size_t n = candidates_.size(), round = turn / n, t = turn % n;
  return round % 2 == 0 ? t : n - 1 - t;
}

int64_t BlasThreadTuner::next() const {
  return decided() ? choice_ : candidates_[candidate_at(timings_.size())];
}

void BlasThreadTuner::record(double seconds) {
  if (!decided() && !measured()) timings_.push_back(seconds);
}

bool BlasThreadTuner::measured() const {
  return static_cast<int64_t>(timings_.size()) >=
         warmup_ + rounds_ * steps_per_turn_ * static_cast<int64_t>(candidates_.size());
}

std::vector<double> BlasThreadTuner::seconds_per_step() const {
  TORCH_CHECK(measured(), "BlasThreadTuner::seconds_per_step: the trial is not over");
  const std::size_t n = candidates_.size();
  std::vector<std::vector<double>> turns(n);  // per candidate, each round's mean
  for (int64_t turn = 0; turn < rounds_ * static_cast<int64_t>(n); ++turn) {
    const std::size_t first = static_cast<std::size_t>(warmup_ + turn * steps_per_turn_);
    double sum = 0.0;
    for (int64_t i = 0; i < steps_per_turn_; ++i) sum += timings_[first + static_cast<std::size_t>(i)];
    turns[candidate_at(first)].push_back(sum / static_cast<double>(steps_per_turn_));
  }
  std::vector<double> medians;
  for (auto& means : turns) {
    std::sort(means.begin(), means.end());
    const std::size_t m = means.size();
    medians.push_back(m % 2 ? means[m / 2] : 0.5 * (means[m / 2 - 1] + means[m / 2]));
  }
  return medians;
}

void BlasThreadTuner::decide(const std::vector<double>& seconds) {
  TORCH_CHECK(seconds.size() == candidates_.size(), "BlasThreadTuner::decide: one figure per candidate");
  choice_ = candidates_[static_cast<std::size_t>(std::min_element(seconds.begin(), seconds.end()) - seconds.begin())];
}

void BlasThreadTuner::restore(std::vector<double> timings, int64_t choice) {
  choice_ = std::max<int64_t>(choice, 0);
  timings_ = std::move(timings);
  if (!decided() && measured()) timings_.clear();  // another schedule's: measure afresh
}

double TrainOptions::lr_at(int64_t epoch) const {
  if (schedule == "step") return lr * std::pow(gamma, static_cast<double>(epoch / step_size));
  if (schedule == "cosine") {
    // Loshchilov & Hutter (SGDR, 2017), one cycle over the whole run, without restarts.
    const double t = static_cast<double>(epoch) / static_cast<double>(epochs);
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * t));
  }
  return lr;
}

namespace {

Json terms_json(const std::vector<std::pair<std::string, double>>& terms) {
  Json j = Json::object();
  for (const auto& [name, value] : terms) j[name] = value;
  return j;
}

std::string format_terms(const std::vector<std::pair<std::string, double>>& terms) {
  std::string text;
  for (const auto& [name, value] : terms) text += fmt::format(" {}={:.5g}", name, value);
  return text;
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Accumulates example-weighted means of a loss and its terms.
class LossMeter {
 public:
  void add(const Losses& losses, double total, int64_t count) {
    if (terms_.empty()) {
      for (const auto& [name, t] : losses.terms) terms_.emplace_back(name, 0.0);
    }
    total_ += total * static_cast<double>(count);
    for (std::size_t i = 0; i < terms_.size(); ++i) {
      terms_[i].second += losses.terms[i].second.item<double>() * static_cast<double>(count);
    }
    count_ += count;
  }
  double mean() const { return count_ ? total_ / static_cast<double>(count_) : 0.0; }
  LossSummary summary() const {
    LossSummary s{mean(), terms_};
    for (auto& [name, value] : s.terms) value /= static_cast<double>(std::max<int64_t>(count_, 1));
    return s;
  }
  // The sums over the ranks of a data-parallel run, on every rank.
  void reduce(ProcessGroup& group) {
    torch::Tensor sums = torch::empty({static_cast<int64_t>(terms_.size()) + 2}, torch::kFloat64);
    auto* v = sums.data_ptr<double>();
    v[0] = total_;
    v[1] = static_cast<double>(count_);
    for (std::size_t i = 0; i < terms_.size(); ++i) v[i + 2] = terms_[i].second;
    group.all_reduce_sum(sums);
    total_ = v[0];
    count_ = static_cast<int64_t>(v[1]);
    for (std::size_t i = 0; i < terms_.size(); ++i) terms_[i].second = v[i + 2];
  }

 private:
  double total_ = 0.0;
  int64_t count_ = 0;
  std::vector<std::pair<std::string, double>> terms_;
};

// The columns of the terminal on stderr; 80 when it reports none.
int terminal_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

// `Reporter` for a person at a terminal, or a log: see console_reporter().
class ConsoleReporter final : public Reporter {
 public:
  void on_batch(const TrainingStage& stage, const BatchProgress& progress) override {
    if (!terminal_) return;
    if (progress.done < progress.total && progress.seconds - last_ < 0.1) return;
    last_ = progress.seconds;
    drawn_ = true;
    std::fprintf(stderr, "\r\033[K%s", progress_line(stage.name, progress, terminal_columns()).c_str());
    std::fflush(stderr);
  }
  void on_batches_end(const TrainingStage& /*stage*/) override {
    last_ = -1.0;
    if (!drawn_) return;
    drawn_ = false;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  void on_epoch_end(const TrainingStage& stage, const EpochRecord& record, int64_t epochs) override {
    if (!stage.name.empty()) std::cout << stage.name << "  ";
    std::cout << fmt::format("epoch {}/{}  train_loss={:.5g}{}  val_loss={:.5g}  {:.0f} samples/s  {:.1f}s\n",
                             record.epoch, epochs, record.train_loss, format_terms(record.train_terms),
                             record.val_loss, record.samples_per_s, record.seconds)
              << std::flush;
  }
  void on_note(const std::string& text) override { std::cout << text << "\n" << std::flush; }
  void on_warning(const std::string& text) override { std::cerr << "torchae: warning: " << text << "\n" << std::flush; }

 private:
  const bool terminal_ = ::isatty(STDERR_FILENO) != 0;
  double last_ = -1.0;
  bool drawn_ = false;
};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o,
                                                        const std::vector<torch::Tensor>& params) {
  if (o.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  return std::make_unique<FusedAdam>(
      params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
}

}  // namespace

// A second thread for Adam's update behind backward, for a step whose arithmetic runs on one core
// (LibTorch's intra-op threads one, OpenBLAS on one thread, the products not paired): each
// parameter is updated on the second core as soon as backward has its gradient (a post-hook on the
// parameter's gradient accumulator, as DistributedDataParallel hooks its all-reduce), while
// backward goes on with the layers below. Each update is the one `FusedAdam::step` makes, so the
// parameters are those of a step that updates them all at the end, bit for bit. That needs what
// backward reads after a parameter's gradient is final never to be the parameter itself: true of a
// graph in which every node that saved a parameter also sends it a gradient (its accumulator runs
// after all of them); the trainer's test checks every family. (When the products take both cores,
// an update beside them would take one away: the trainer makes it in halves after backward,
// `FusedAdam::step_in_halves`, on its helper thread.)
class AdamWorker {
 public:
  AdamWorker(FusedAdam& adam, const std::vector<torch::Tensor>& parameters) : adam_(adam) {
    std::map<const void*, torch::optim::AdamOptions*> options_of;  // each parameter's group's
    for (auto& group : adam.param_groups()) {
      auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
      for (const auto& p : group.params()) options_of[p.unsafeGetTensorImpl()] = &options;
    }
    for (const auto& p : parameters) {
      auto found = options_of.find(p.unsafeGetTensorImpl());
      if (!p.requires_grad() || found == options_of.end()) continue;
      const std::size_t index = parameters_.size();
      parameters_.push_back(p);
      options_.push_back(found->second);
      accumulators_.push_back(torch::autograd::impl::grad_accumulator(p));
      hook_keys_.push_back(accumulators_.back()->add_post_hook(std::make_unique<Hook>(this, index)));
    }
    updated_.assign(parameters_.size(), 0);
    worker_ = std::thread([this] { run(); });
  }
  AdamWorker(const AdamWorker&) = delete;
  AdamWorker& operator=(const AdamWorker&) = delete;
  ~AdamWorker() {
    for (std::size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_one();
    worker_.join();
  }

  /// Behind backward: from now until `finish`, each parameter whose gradient backward completes is
  /// updated.
  void arm() {
    keep_off_this_core(worker_, &worker_kept_off_);
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = true;
  }
  /// After a backward that failed: waits for the updates under way and makes no more.
  void disarm() {
    std::unique_lock<std::mutex> lock(mutex_);
    armed_ = false;
    done_.wait(lock, [&] { return pending_ == 0; });
    error_ = nullptr;
    std::fill(updated_.begin(), updated_.end(), 0);
  }
  /// After backward: waits for the updates under way, then makes those of parameters whose
  /// gradient no hook announced (set otherwise than by backward), here, in order.
  void finish() {
    std::unique_lock<std::mutex> lock(mutex_);
    armed_ = false;
    // The updates the worker has not begun are made here (it may be waiting for a core the machine
    // has given to something else); then the one it is making is waited for.
    while (!queue_.empty()) {
      const std::size_t index = queue_.front();
      queue_.erase(queue_.begin());
      lock.unlock();
      apply([&] { update(index); });
      lock.lock();
    }
    wait_and_rethrow(lock);
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      if (!updated_[i] && parameters_[i].grad().defined()) update(i);
      updated_[i] = 0;
    }
  }

 private:
  struct Hook final : torch::autograd::FunctionPostHook {
    Hook(AdamWorker* owner, std::size_t index) : owner(owner), index(index) {}
    torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                              const torch::autograd::variable_list& /*inputs*/) override {
      owner->enqueue(index);
      return outputs;
    }
    AdamWorker* owner;
    std::size_t index;
  };

  void enqueue(std::size_t index) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!armed_ || updated_[index]) return;
      updated_[index] = 1;
      queue_.push_back(index);
      ++pending_;
    }
    wake_.notify_one();
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping
      const std::size_t index = queue_.front();
      queue_.erase(queue_.begin());
      lock.unlock();
      apply([&] { update(index); });
      lock.lock();
    }
  }

  // What `FusedAdam::step` does to parameter `index`.
  void update(std::size_t index) { adam_.update(parameters_[index], parameters_[index].grad(), *options_[index]); }

  // Runs one task counted in pending_ (without the lock), then counts it done.
  template <typename Task>
  void apply(const Task& task) {
    std::exception_ptr error;
    try {
      task();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (error && !error_) error_ = error;
    if (--pending_ == 0) done_.notify_all();
  }

  // Waits until no task is pending; rethrows the first error a task met, if any.
  void wait_and_rethrow(std::unique_lock<std::mutex>& lock) {
    done_.wait(lock, [&] { return pending_ == 0; });
    if (error_) {
      std::exception_ptr error = std::exchange(error_, nullptr);
      std::fill(updated_.begin(), updated_.end(), 0);
      std::rethrow_exception(error);
    }
  }

  FusedAdam& adam_;
  std::vector<torch::Tensor> parameters_;
  std::vector<torch::optim::AdamOptions*> options_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<std::uintptr_t> hook_keys_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::size_t> queue_;
  std::vector<char> updated_;  // this step's, under mutex_
  std::size_t pending_ = 0;
  bool armed_ = false, stop_ = false;
  std::exception_ptr error_;
  int worker_kept_off_ = -1;  // the core the worker may not run on, once set (keep_off_this_core)
  std::thread worker_;
};

torch::Device training_device(const TrainOptions& options) {
  const torch::Device device = resolve_device(options.device);
  if (options.group && device.is_cuda() && options.device.find(':') == std::string::npos) {
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(options.group->local_rank() % torch::cuda::device_count())};
  }
  return device;
}

namespace {

// Whether `module` holds a convolution (the conv backbone's layers): its step runs on oneDNN,
// whose threads are LibTorch's intra-op threads.
bool has_convolutions(const torch::nn::Module& module) {
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (dynamic_cast<const torch::nn::Conv2dImpl*>(child.get()) != nullptr ||
        dynamic_cast<const torch::nn::ConvTranspose2dImpl*>(child.get()) != nullptr) {
      return true;
    }
  }
  return false;
}

// Loads a module's archive (as Module::save wrote it) into `module`, refusing rather than
// reshaping: Module::load would take a tensor of any shape in place of a parameter. Every
// parameter and buffer must be there with the module's shape and type, and the archive must hold
// nothing the module has not; the first mismatch is an Error naming the tensor (`prefix` its path).
void load_fitting(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& prefix) {
  std::set<std::string> known{"training"};
  torch::NoGradGuard no_grad;
  auto take = [&](const std::string& name, torch::Tensor& into, bool is_buffer) {
    known.insert(name);
    torch::Tensor stored;
    if (!archive.try_read(name, stored, is_buffer)) {
      throw Error(fmt::format("it has no {}{}, which the model has ({})", prefix, name, shape_of(into)));
    }
    if (stored.sizes() != into.sizes() || stored.scalar_type() != into.scalar_type()) {
      throw Error(fmt::format("{}{} is {} there, {} in the model", prefix, name, shape_of(stored), shape_of(into)));
    }
    into.copy_(stored);
  };
  for (auto& p : module.named_parameters(/*recurse=*/false)) take(p.key(), p.value(), false);
  for (auto& b : module.named_buffers(/*recurse=*/false)) take(b.key(), b.value(), true);
  for (const auto& child : module.named_children()) {
    known.insert(child.key());
    torch::serialize::InputArchive child_archive;
    if (!archive.try_read(child.key(), child_archive)) {
      throw Error(fmt::format("it has no {}{}, a part of the model", prefix, child.key()));
    }
    load_fitting(*child.value(), child_archive, prefix + child.key() + ".");
  }
  for (const std::string& key : archive.keys()) {
    if (known.count(key) == 0) throw Error(fmt::format("it holds {}{}, which the model has not", prefix, key));
  }
}

// `load_fitting` of a checkpoint's "model", an Error naming the checkpoint.
void load_model_part(torch::nn::Module& module, torch::serialize::InputArchive& checkpoint,
                     const std::filesystem::path& path, const char* model_is = kModelOfItsRun) {
  torch::serialize::InputArchive model_archive;
  checkpoint.read("model", model_archive);
  try {
    load_fitting(module, model_archive, "");
  } catch (const Error& e) {
    throw Error(fmt::format("{}: the checkpoint does not fit {}: {}", path.string(), model_is, e.what()));
  }
}

}  // namespace

namespace {

// The configuration an open checkpoint records (null when it records none).
Json recorded_config(torch::serialize::InputArchive& archive, const std::filesystem::path& path) {
  c10::IValue config;
  if (!archive.try_read("config", config) || !config.isString()) return nullptr;
  return parse_json(config.toStringRef(), path.string() + ": its config");
}

}  // namespace

std::string shape_of(const torch::Tensor& t) {
  return fmt::format("{} [{}]", c10::toString(t.scalar_type()), fmt::join(t.sizes(), ", "));
}

Json load_model_weights(Autoencoder& model, const std::filesystem::path& checkpoint, const torch::Device& device,
                        const char* model_is) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(checkpoint.string(), device);
    load_model_part(model.module(), archive, checkpoint, model_is);
    return recorded_config(archive, checkpoint);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: cannot load the model: {}", checkpoint.string(), e.what_without_backtrace()));
  }
}

Json checkpoint_config(const std::filesystem::path& run_dir) {
  const auto path = run_dir / kCheckpointFile;
  std::error_code ec;
  if (run_dir.empty() || !std::filesystem::exists(path, ec)) return nullptr;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string(), torch::kCPU);
    return recorded_config(archive, path);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: cannot read this checkpoint: {}", path.string(), e.what_without_backtrace()));
  }
}

CheckpointPosition checkpoint_position(const std::filesystem::path& run_dir) {
  const auto path = run_dir / kCheckpointFile;
  std::error_code ec;
  if (run_dir.empty() || !std::filesystem::exists(path, ec)) return {};
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string(), torch::kCPU);
    torch::Tensor stage, epoch;
    archive.read("epoch", epoch);
    return {archive.try_read("stage", stage) ? stage.item<int64_t>() : 0, epoch.item<int64_t>()};
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: cannot read this checkpoint: {}", path.string(), e.what_without_backtrace()));
  }
}

int64_t checkpoint_stage(const std::filesystem::path& run_dir) { return checkpoint_position(run_dir).stage; }

Json EpochRecord::to_json() const {
  Json j = tag;
  if (!tag.empty()) j["stage"] = stage;
  j.update(Json{{"epoch", epoch},          {"lr", lr},
                {"train_loss", train_loss}, {"train", terms_json(train_terms)},
                {"val_loss", val_loss},     {"val", terms_json(val_terms)},
                {"seconds", seconds},       {"samples_per_s", samples_per_s},
                {"data_wait_s", data_wait_s}, {"data_skipped", data_skipped}});
  return j;
}

Trainer::Trainer(std::shared_ptr<Autoencoder> model, TrainOptions options, std::filesystem::path run_dir,
                 TrainingStage stage)
    : model_(std::move(model)),
      options_(std::move(options)),
      run_dir_(std::move(run_dir)),
      stage_(std::move(stage)),
      device_(training_device(options_)),
      shuffle_(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options_.seed))),
      best_val_(std::numeric_limits<double>::infinity()) {
  set_threads(options_.threads > 0 || !device_.is_cpu() || !has_convolutions(model_->module()) ? options_.threads
                                                                                               : cores_per_process());
  blas_threads_before_ = blas_threads();
  if (options_.blas_threads == kAutoBlasThreads) {
    if (device_.is_cpu() && blas_threads() > 1) blas_tuner_ = std::make_unique<BlasThreadTuner>(blas_threads());
  } else {
    step_blas_threads_ = options_.blas_threads;
  }
  if (options_.validate_corrupted && !dynamic_cast<Corrupting*>(model_.get())) {
    throw Error("config: train.validate_corrupted: the model is not trained on corrupted batches (only a denoising "
                "model is); leave it false");
  }
  model_->module().to(device_);
  parameters_ = model_->module().parameters();
  if (auto* adversarial = dynamic_cast<Adversarial*>(model_.get())) {
    adversary_parameters_ = adversarial->adversary_parameters();
    if (!adversary_parameters_.empty()) {
      adversary_ = adversarial;
      std::set<const void*> theirs;
      for (const auto& p : adversary_parameters_) theirs.insert(p.unsafeGetTensorImpl());
      parameters_.erase(std::remove_if(parameters_.begin(), parameters_.end(),
                                       [&](const torch::Tensor& p) { return theirs.count(p.unsafeGetTensorImpl()) != 0; }),
                        parameters_.end());
      TrainOptions adversary_options = options_;
      adversary_options.lr = adversarial->adversary_lr();
      adversary_optimizer_ = make_optimizer(adversary_options, adversary_parameters_);
    }
  }
  optimizer_ = make_optimizer(options_, parameters_);
  const bool two_cores = device_.is_cpu() && cores_per_process() >= 2;
  paired_ = device_.is_cpu() && options_.paired_products && cores_per_process() == 2;
  adam_on_two_cores_ = two_cores && options_.optimizer == "adam" && options_.clip_grad_norm == 0 && !options_.group &&
                       !adversary_;
  if (paired_ || adam_on_two_cores_) helper_ = std::make_unique<HelperThread>();
  // Behind backward needs the products on one core, which paired products are not.
  if (adam_on_two_cores_ && !paired_) {
    adam_worker_ = std::make_unique<AdamWorker>(static_cast<FusedAdam&>(*optimizer_), parameters_);
  }
  if (ProcessGroup* group = options_.group.get()) {
    if (options_.batch_size < group->size()) {
      throw Error(fmt::format("config: train.batch_size: {} is smaller than the {} ranks of this run: it is the "
                              "global batch, and every rank needs a part of each batch",
                              options_.batch_size, group->size()));
    }
    // Every rank starts from rank 0's weights, as DistributedDataParallel does.
    std::vector<torch::Tensor> state = model_->module().parameters();
    for (const auto& b : model_->module().buffers()) state.push_back(b);
    group->broadcast(state);
    reducer_ = std::make_unique<GradientReducer>(*group, parameters_);
    if (adversary_) adversary_reducer_ = std::make_unique<GradientReducer>(*group, adversary_parameters_);
    seed_rank_generator(0);
  }
}

Trainer::~Trainer() {
  // OpenBLAS's threads as they were before this trainer set them.
  if (blas_tuner_ || step_blas_threads_ > 0) set_blas_threads(blas_threads_before_);
}

void Trainer::seed_rank_generator(int64_t epoch) const {
  if (!options_.group || options_.group->rank() == 0) return;
  // Distinct streams for distinct (seed, rank, epoch); rank 0 keeps the one-process stream.
  const uint64_t rank = static_cast<uint64_t>(options_.group->rank());
  torch::manual_seed(static_cast<uint64_t>(options_.seed) * 0x9E3779B97F4A7C15ull + rank * 0xBF58476D1CE4E5B9ull +
                     static_cast<uint64_t>(epoch));
}

bool Trainer::resume() {
  const auto path = run_dir_ / kCheckpointFile;
  std::error_code ec;
  if (run_dir_.empty() || !std::filesystem::exists(path, ec)) return false;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string(), device_);
    torch::Tensor stage;
    const int64_t written_in = archive.try_read("stage", stage) ? stage.cpu().item<int64_t>() : 0;
    if (written_in != stage_.index) {
      throw Error(fmt::format("{}: the checkpoint belongs to stage {} of the run, not to stage {}", path.string(),
                              written_in, stage_.index));
    }
    load_model_part(saved_module(), archive, path);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer_->load(optimizer_archive);
    if (adversary_optimizer_) {
      torch::serialize::InputArchive adversary_archive;
      archive.read("adversary_optimizer", adversary_archive);
      adversary_optimizer_->load(adversary_archive);
    }
    // A fresh tensor for each entry: reading into a defined tensor would set_() its storage.
    auto entry = [&](const char* key) {
      torch::Tensor t;
      archive.read(key, t);
      return t.cpu();
    };
    epoch_ = entry("epoch").item<int64_t>();
    best_val_ = entry("best_val").item<double>();
    bad_epochs_ = entry("bad_epochs").item<int64_t>();
    stopped_early_ = entry("stopped_early").item<bool>();
    torch::Tensor tuning, chosen;
    if (blas_tuner_ && archive.try_read("blas_tuning", tuning) && archive.try_read("blas_threads", chosen)) {
      tuning = tuning.cpu().contiguous();
      blas_tuner_->restore({tuning.data_ptr<double>(), tuning.data_ptr<double>() + tuning.numel()},
                           chosen.cpu().item<int64_t>());
    }
    shuffle_.set_state(entry("rng_shuffle"));
    at::Generator(at::detail::getDefaultCPUGenerator()).set_state(entry("rng_cpu"));
    // Ranks other than 0 take their own state when the checkpoint was written by as many ranks;
    // under another world size they start afresh from the seed, their rank and the epoch.
    torch::Tensor rank_states;
    const bool same_world = options_.group && archive.try_read("rng_cpu_ranks", rank_states) &&
                            rank_states.size(0) == options_.group->size();
    if (options_.group && options_.group->rank() > 0) {
      if (same_world) {
        at::Generator(at::detail::getDefaultCPUGenerator()).set_state(rank_states[options_.group->rank()].cpu());
      } else {
        seed_rank_generator(epoch_);
      }
    }
    // A checkpoint written on the CPU has no CUDA generator state: resumed on CUDA, that
    // generator goes on from where it is.
    torch::Tensor rng_cuda;
    if (device_.is_cuda() && archive.try_read("rng_cuda", rng_cuda)) {
      if (options_.group && options_.group->rank() > 0) {
        rng_cuda = same_world && archive.try_read("rng_cuda_ranks", rank_states) ? rank_states[options_.group->rank()]
                                                                                 : torch::Tensor();
      }
      if (rng_cuda.defined()) at::Generator(at::globalContext().defaultGenerator(device_)).set_state(rng_cuda.cpu());
    }
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: cannot resume from this checkpoint: {}", path.string(),
                            e.what_without_backtrace()));
  }
  return true;
}

torch::serialize::OutputArchive Trainer::checkpoint(
    const std::vector<std::pair<std::string, torch::Tensor>>& rank_rng) const {
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  saved_module().save(model_archive);
  optimizer_->save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  if (adversary_optimizer_) {
    torch::serialize::OutputArchive adversary_archive;
    adversary_optimizer_->save(adversary_archive);
    archive.write("adversary_optimizer", adversary_archive);
  }
  archive.write("epoch", torch::tensor(epoch_));
  archive.write("best_val", torch::tensor(best_val_, torch::kFloat64));
  archive.write("bad_epochs", torch::tensor(bad_epochs_));
  archive.write("stopped_early", torch::tensor(stopped_early_));
  archive.write("stage", torch::tensor(stage_.index));
  if (blas_tuner_) {
    const std::vector<double>& timings = blas_tuner_->timings();
    archive.write("blas_tuning", torch::tensor(c10::ArrayRef<double>(timings), torch::kFloat64));
    archive.write("blas_threads", torch::tensor(blas_tuner_->choice()));
  }
  archive.write("rng_shuffle", at::Generator(shuffle_).get_state());
  archive.write("rng_cpu", at::Generator(at::detail::getDefaultCPUGenerator()).get_state());
  if (device_.is_cuda()) archive.write("rng_cuda", at::Generator(at::globalContext().defaultGenerator(device_)).get_state());
  for (const auto& [key, states] : rank_rng) archive.write(key, states);
  if (!config_.is_null()) archive.write("config", c10::IValue(json_text(config_)));
  return archive;
}

std::string Trainer::metrics_with(const EpochRecord& record) const {
  const auto path = run_dir_ / kMetricsFile;
  // The lines of epochs this run is about to redo (a run killed between renaming metrics and
  // checkpoint, then resumed) are dropped; lines of earlier stages stay.
  std::string kept;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    std::istringstream lines(read_text(path));
    for (std::string line; std::getline(lines, line);) {
      const Json j = Json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      const int64_t stage = j.value("stage", int64_t{0});
      if (stage < record.stage || (stage == record.stage && j.value("epoch", int64_t{0}) < record.epoch)) {
        kept += line + "\n";
      }
    }
  }
  return kept + json_text(record.to_json()) + "\n";
}

void Trainer::save(const EpochRecord& record) const {
  std::vector<std::pair<std::string, torch::Tensor>> rank_rng;
  if (ProcessGroup* group = options_.group.get()) {
    rank_rng.emplace_back("rng_cpu_ranks",
                          torch::stack(group->all_gather(at::Generator(at::detail::getDefaultCPUGenerator()).get_state())));
    if (device_.is_cuda()) {
      rank_rng.emplace_back("rng_cuda_ranks", torch::stack(group->all_gather(
                                                  at::Generator(at::globalContext().defaultGenerator(device_)).get_state())));
    }
  }
  // Both files are written before either is replaced, so a full disk leaves both as they were.
  // Metrics is renamed first: a process killed between the two renames leaves it one line
  // ahead of the checkpoint, and the resumed run redoes that epoch and rewrites its line.
  const auto write = [&] {
    AtomicFiles files;
    files.add(run_dir_ / kMetricsFile, [&](std::ostream& out) { out << metrics_with(record); });
    torch::serialize::OutputArchive archive = checkpoint(rank_rng);
    files.add(run_dir_ / kCheckpointFile, [&](std::ostream& out) { archive.save_to(out); });
    files.commit();
  };
  if (options_.group) {
    options_.group->on_writer(write);  // a full disk on rank 0 stops every rank
  } else {
    write();
  }
}

Losses Trainer::losses_of(const torch::Tensor& batch, const torch::Tensor& labels, const Output& out) {
  if (!model_->supervised()) return model_->loss(batch, out);
  if (!labels.defined()) throw Error("this training stage is supervised and needs labeled data");
  return model_->supervised_loss(out, labels);
}

Losses Trainer::step(const torch::Tensor& batch, const torch::Tensor& labels) {
  return step_part(batch, labels, options_.group ? batch.size(0) * options_.group->size() : batch.size(0));
}

namespace {

// A data-parallel step's loss figures: [total, terms...] summed over this rank's examples.
torch::Tensor loss_sums(const Losses& losses, std::size_t terms, int64_t count, const torch::TensorOptions& options) {
  torch::Tensor sums = torch::zeros({static_cast<int64_t>(terms) + 1}, torch::kFloat64);
  if (count > 0) {
    auto* v = sums.data_ptr<double>();
    v[0] = losses.total.item<double>() * static_cast<double>(count);
    for (std::size_t i = 0; i < losses.terms.size(); ++i) {
      v[i + 1] = losses.terms[i].second.item<double>() * static_cast<double>(count);
    }
  }
  return sums.to(options);
}

}  // namespace

Losses Trainer::step_part(const torch::Tensor& batch, const torch::Tensor& labels, int64_t global_count) {
  ProcessGroup* group = options_.group.get();
  const int64_t count = batch.defined() ? batch.size(0) : 0;
  const int64_t blas = blas_tuner_ ? blas_tuner_->next() : step_blas_threads_;
  if (blas > 0 && blas != blas_threads()) set_blas_threads(blas);
  const auto started = Clock::now();
  // With LibTorch on one thread, Adam's update takes the second core: when the products run on one
  // thread (OpenBLAS on one, not paired), each parameter's as soon as its gradient is final; else
  // half of the update at the end, on the helper thread.
  const bool second_core = adam_on_two_cores_ && at::get_num_threads() == 1;
  const bool behind = second_core && adam_worker_ && blas_threads() == 1;
  std::optional<PairedProducts> paired;
  if (paired_) paired.emplace(*helper_);
  // Setting gradients to none (rather than zeroing them) spares a memset per parameter and
  // lets backward write fresh gradients directly.
  for (auto& p : parameters_) p.mutable_grad().reset();
  // A rank whose part of the last batch is empty still takes part in the step, with no gradient.
  Output out;
  Losses losses;
  // The scopes name the parts of the step for LibTorch's profiler (profile_steps); they cost a
  // flag test when no profiler runs.
  if (count > 0) {
    {
      RECORD_USER_SCOPE("torchae::forward");
      out = model_->forward(batch);
    }
    {
      RECORD_USER_SCOPE("torchae::loss");
      losses = losses_of(batch, labels, out);
    }
    RECORD_USER_SCOPE("torchae::backward");
    if (behind) adam_worker_->arm();
    try {
      losses.total.backward();
    } catch (...) {
      if (behind) adam_worker_->disarm();
      throw;
    }
  }
  // Each rank's gradient is of the mean over its examples: weighted by its share, the sum over the
  // ranks is the gradient of the mean over the global batch.
  const double share = static_cast<double>(count) / static_cast<double>(global_count);
  torch::Tensor figures;
  const auto gather_figures = [&] {
    if (count > 0 && term_names_.empty()) {
      for (const auto& term : losses.terms) term_names_.push_back(term.first);
    }
    if (count == 0 && term_names_.empty()) throw Error("a rank's first batch was empty: too few examples per rank");
    figures = loss_sums(losses, term_names_.size(), count, parameters_.front().options().requires_grad(false));
  };
  if (group) {
    if (!adversary_) gather_figures();
    reducer_->reduce(share, adversary_ ? nullptr : &figures);
  }
  {
    RECORD_USER_SCOPE("torchae::optimizer");
    if (options_.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(parameters_, options_.clip_grad_norm);
    if (behind) {
      adam_worker_->finish();
    } else if (second_core) {
      static_cast<FusedAdam&>(*optimizer_).step_in_halves(*helper_);
    } else {
      optimizer_->step();
    }
  }
  if (adversary_) {
    // The model's backward left gradients in the adversary too (its loss passes through it);
    // the adversary's step starts from its own loss alone.
    for (auto& p : adversary_parameters_) p.mutable_grad().reset();
    if (count > 0) {
      Losses adversary = adversary_->adversary_loss(out);
      adversary.total.backward();
      losses.terms.insert(losses.terms.end(), adversary.terms.begin(), adversary.terms.end());
    }
    if (group) {
      gather_figures();
      adversary_reducer_->reduce(share, &figures);
    }
    adversary_optimizer_->step();
  }
  if (blas_tuner_ && !blas_tuner_->decided()) tune_blas_threads(seconds_since(started));
  if (!group) return losses;
  // The global batch's mean loss and terms, the same on every rank.
  const torch::Tensor means = (figures.to(torch::kCPU, torch::kFloat64) / static_cast<double>(global_count));
  Losses global{means[0], {}};
  for (std::size_t i = 0; i < term_names_.size(); ++i) global.terms.emplace_back(term_names_[i], means[i + 1]);
  return global;
}

void Trainer::tune_blas_threads(double seconds) {
  blas_tuner_->record(seconds);
  if (!blas_tuner_->measured()) return;
  std::vector<double> per_step = blas_tuner_->seconds_per_step();
  if (ProcessGroup* group = options_.group.get()) {
    torch::Tensor sums = torch::tensor(c10::ArrayRef<double>(per_step), torch::kFloat64);
    group->all_reduce_sum(sums);
    per_step.assign(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
  }
  blas_tuner_->decide(per_step);
  set_blas_threads(blas_tuner_->choice());
  if (Reporter* r = reporter("lines")) {
    const auto threads = [](int64_t n) { return n == 1 ? std::string("1 thread") : fmt::format("{} threads", n); };
    std::vector<std::string> timed;
    for (std::size_t i = 0; i < per_step.size(); ++i) {
      timed.push_back(fmt::format("{} {:.3g} ms", threads(blas_tuner_->candidates()[i]), 1e3 * per_step[i]));
    }
    if (Reporter* bar = reporter("auto")) bar->on_batches_end(stage_);  // the note on a line of its own
    r->on_note(fmt::format("train.blas_threads auto: OpenBLAS on {} (a step: {}{})", threads(blas_tuner_->choice()),
                           fmt::join(timed, ", "), options_.group ? ", summed over the ranks" : ""));
  }
}

LossSummary Trainer::evaluate(const Dataset& data) { return evaluate(data, Corrupted{}); }

LossSummary Trainer::evaluate(const Dataset& data, const Corrupted& corrupted) {
  Corrupting* corrupting = nullptr;
  if (corrupted.input.defined()) {
    corrupting = dynamic_cast<Corrupting*>(model_.get());
    TORCH_CHECK(corrupting && corrupted.input.sizes() == data.inputs.sizes(),
                "Trainer::evaluate: corrupted inputs need a Corrupting model and data's shape");
  }
  torch::NoGradGuard no_grad;
  std::optional<PairedProducts> paired;
  if (paired_) paired.emplace(*helper_);
  const bool was_training = model_->module().is_training();
  model_->module().eval();
  LossMeter meter;
  const Dataset on_device = data.to(device_);
  const Corrupted corrupted_on_device = corrupted.to(device_);
  const int64_t batch_size = std::max<int64_t>(options_.batch_size, 1000);
  // In a data-parallel run each rank evaluates its shard and the sums are reduced: the figures
  // one process would get. Data smaller than the world is evaluated whole on every rank.
  ProcessGroup* group = options_.group.get();
  const bool sharded = group && data.size() >= group->size();
  const auto [first, length] = sharded ? shard_of(data.size(), group->rank(), group->size())
                                       : std::pair<int64_t, int64_t>{0, data.size()};
  for (int64_t start = first; start < first + length; start += batch_size) {
    const int64_t n = std::min(batch_size, first + length - start);
    const torch::Tensor x = on_device.inputs.narrow(0, start, n);
    const Output out =
        corrupting ? corrupting->forward_corrupted(corrupted_on_device.narrow(start, n)) : model_->forward(x);
    Losses losses =
        losses_of(x, on_device.labels.defined() ? on_device.labels.narrow(0, start, n) : torch::Tensor(), out);
    meter.add(losses, losses.total.item<double>(), x.size(0));
  }
  if (sharded) meter.reduce(*group);
  model_->module().train(was_training);
  return meter.summary();
}

namespace {

// One epoch's batches as the training step takes them: this rank's part of each, in order.
class EpochFeed {
 public:
  virtual ~EpochFeed() = default;
  virtual int64_t size() const = 0;
  /// Examples in batch i, all parts together.
  virtual int64_t count(int64_t i) const = 0;
  virtual Dataset next() = 0;
  virtual double waited_seconds() const = 0;
  virtual std::vector<std::string> skipped() const { return {}; }
};

class MemoryFeed : public EpochFeed {
 public:
  MemoryFeed(const Dataset& data, int64_t batch_size, torch::Tensor order, int part, int parts, bool labels)
      : batches_(data, batch_size, std::move(order)), part_(part), parts_(parts), labels_(labels) {}
  int64_t size() const override { return batches_.size(); }
  int64_t count(int64_t i) const override { return batches_.count(i); }
  Dataset next() override {
    const auto start = Clock::now();
    Dataset batch = labels_ ? batches_.at(next_, part_, parts_) : Dataset{batches_.inputs(next_, part_, parts_), {}};
    ++next_;
    waited_ += seconds_since(start);
    return batch;
  }
  double waited_seconds() const override { return waited_; }

 private:
  Batches batches_;
  int part_, parts_;
  bool labels_;
  int64_t next_ = 0;
  double waited_ = 0.0;
};

class StreamFeed : public EpochFeed {
 public:
  StreamFeed(const BatchSource& source, torch::Tensor order, uint64_t seed, int64_t epoch, int64_t batch_size, int part,
             int parts, LoaderOptions options, torch::Device device)
      : loader_(source, std::move(order), seed, epoch, batch_size, part, parts, options), device_(device) {}
  int64_t size() const override { return loader_.size(); }
  int64_t count(int64_t i) const override { return loader_.count(i); }
  Dataset next() override { return loader_.next().to(device_); }
  double waited_seconds() const override { return loader_.waited_seconds(); }
  std::vector<std::string> skipped() const override { return loader_.skipped(); }

 private:
  BatchLoader loader_;
  torch::Device device_;
};

}  // namespace

torch::Tensor Trainer::augmented(const torch::Tensor& images, int64_t batch, int64_t count, int part,
                                 int parts) const {
  const bool dihedral = options_.augment == "dihedral";
  if (!orientable(options_.augment, images.sizes().slice(1))) {  // the caller has a batch of at least one
    throw Error(fmt::format("config: train.augment: \"{}\" needs {}, and the batches are [{}]; leave it \"none\"",
                            options_.augment, dihedral ? "square images" : "images", fmt::join(images.sizes(), ", ")));
  }
  // Orientations of their own, seeded by (seed, epoch, batch), drawn for the whole batch: each rank
  // of a data-parallel run takes its part's, as one process would draw them.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options_.seed) * 0x9E3779B97F4A7C15ull +
                                                            static_cast<uint64_t>(epoch_) * 0xBF58476D1CE4E5B9ull +
                                                            static_cast<uint64_t>(batch) * 0x94D049BB133111EBull);
  const torch::Tensor orientations = torch::randint(dihedral ? 8 : 2, {count}, generator, torch::kLong);
  const auto [start, length] = shard_of(count, part, parts);
  TORCH_CHECK(length == images.size(0), "augment: a part of ", images.size(0), " examples where ", length, " were due");
  return orient_images(images, orientations.narrow(0, start, length));
}

EpochRecord Trainer::train_epoch(const Dataset* train, const BatchSource* stream) {
  const double lr = options_.lr_at(epoch_);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  model_->set_progress(epoch_, options_.epochs);
  model_->module().train();
  const auto start = Clock::now();
  const int part = options_.group ? options_.group->rank() : 0;
  const int parts = options_.group ? options_.group->size() : 1;
  const int64_t examples = stream ? stream->size() : train->size();
  // A streamed set of fresh draws needs no shuffle; one of fixed examples is shuffled as in memory.
  const torch::Tensor order = !stream || stream->shuffled() ? torch::randperm(examples, shuffle_, torch::kLong)
                                                            : torch::arange(examples);
  std::unique_ptr<EpochFeed> feed;
  if (stream) {
    feed = std::make_unique<StreamFeed>(*stream, order, static_cast<uint64_t>(options_.seed), epoch_,
                                        options_.batch_size, part, parts, loader_, device_);
  } else {
    feed = std::make_unique<MemoryFeed>(*train, options_.batch_size, order.to(device_), part, parts,
                                        model_->supervised());
  }
  Reporter* const bar = reporter("auto");
  BatchProgress progress{epoch_ + 1, options_.epochs, 0, examples, 0.0, 0.0};
  LossMeter meter;
  int64_t seen = 0;
  for (int64_t i = 0; i < feed->size(); ++i) {
    Dataset batch = feed->next();
    const int64_t count = feed->count(i);
    if (options_.augment != "none" && batch.inputs.defined() && batch.inputs.size(0) > 0) {
      batch.inputs = augmented(batch.inputs, i, count, part, parts);
    }
    Losses losses = step_part(batch.inputs, batch.labels, count);
    const double total = losses.total.item<double>();
    if (!std::isfinite(total)) {
      if (bar) bar->on_batches_end(stage_);
      throw Error(fmt::format(
          "training diverged: loss is {} at epoch {}, step {} of {}; {}", total, epoch_ + 1, i + 1, feed->size(),
          run_dir_.empty() || epoch_ == 0
              ? std::string("no checkpoint was written")
              : fmt::format("the last good checkpoint (epoch {}) is left intact in {}", epoch_,
                            (run_dir_ / kCheckpointFile).string())));
    }
    meter.add(losses, total, count);
    seen += count;
    if (bar) {
      progress.done = seen;
      progress.loss = meter.mean();
      progress.seconds = seconds_since(start);
      bar->on_batch(stage_, progress);
    }
  }
  if (bar) bar->on_batches_end(stage_);

  EpochRecord record;
  record.epoch = epoch_ + 1;
  record.lr = lr;
  record.tag = stage_.tag;
  record.stage = stage_.index;
  const LossSummary summary = meter.summary();
  record.train_loss = summary.total;
  record.train_terms = summary.terms;
  record.samples_per_s = static_cast<double>(seen) / seconds_since(start);
  record.data_wait_s = feed->waited_seconds();
  std::vector<std::string> skipped = feed->skipped();
  if (stream && options_.group) {
    // The files each rank met, each counted once however many ranks met it.
    std::string names;
    for (const auto& name : skipped) names += name + "\n";
    std::set<std::string> all;
    for (const std::string& text : options_.group->all_gather_text(names)) {
      std::istringstream lines(text);
      for (std::string line; std::getline(lines, line);) all.insert(line);
    }
    skipped.assign(all.begin(), all.end());
  }
  record.data_skipped = static_cast<int64_t>(skipped.size());
  return record;
}

void Trainer::finish_epoch(const EpochRecord& record) {
  if (record.val_loss < best_val_ - options_.min_delta) {
    best_val_ = record.val_loss;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  epoch_ += 1;
  stopped_early_ = options_.patience > 0 && bad_epochs_ >= options_.patience;
  if (!run_dir_.empty()) save(record);
  if (Reporter* r = reporter("lines")) {
    r->on_epoch_end(stage_, record, options_.epochs);
    if (stopped_early_) {
      r->on_note(fmt::format("early stop: no validation improvement for {} epochs (best {:.5g})", bad_epochs_,
                             best_val_));
    }
  }
  if (on_epoch_end_) on_epoch_end_(record);
}

Reporter* Trainer::reporter(const char* at_least) const {
  if (!options_.reporter || !writes() || options_.progress == "none") return nullptr;
  if (std::string(at_least) == "auto" && options_.progress != "auto") return nullptr;
  return options_.reporter.get();
}

std::shared_ptr<Reporter> console_reporter() { return std::make_shared<ConsoleReporter>(); }

std::string progress_line(const std::string& stage, const BatchProgress& p, int columns) {
  const double rate = p.seconds > 0 ? static_cast<double>(p.done) / p.seconds : 0.0;
  const std::string head = (stage.empty() ? "" : stage + "  ") + fmt::format("epoch {}/{}", p.epoch, p.epochs);
  const std::string count = fmt::format("{}/{}", p.done, p.total);
  const std::string loss = fmt::format("loss {:.5g}", p.loss);
  const std::string speed = fmt::format("{:.0f} samples/s", rate);
  const std::string eta =
      "ETA " + format_duration(rate > 0 ? static_cast<double>(p.total - p.done) / rate : 0.0);
  const int room = std::max(columns - 1, 0);
  auto with_bar = [&](int width, bool show_speed, bool show_eta) {
    std::string line = head;
    if (width > 0) {
      const int filled = static_cast<int>(width * p.done / std::max<int64_t>(p.total, 1));
      line += " [" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
    }
    line += " " + count + "  " + loss;
    if (show_speed) line += "  " + speed;
    if (show_eta) line += "  " + eta;
    return line;
  };
  // Shorten gracefully: the ETA goes first, then the speed, then the bar narrows and goes.
  for (const auto& [speed_on, eta_on] : {std::pair{true, true}, {true, false}, {false, false}}) {
    const int fixed = static_cast<int>(with_bar(0, speed_on, eta_on).size()) + 3;  // " [" and "]"
    const int width = std::min(24, room - fixed);
    if (width >= 10) return with_bar(width, speed_on, eta_on);
    if (!speed_on && fixed - 3 <= room) return with_bar(0, false, false);
  }
  return with_bar(0, false, false).substr(0, static_cast<std::size_t>(room));
}

void Trainer::fit(const Dataset& train, const Dataset& validation) { fit_epochs(&train, nullptr, validation); }

void Trainer::fit(const BatchSource& train, const Dataset& validation, LoaderOptions loader) {
  loader_ = loader;
  fit_epochs(nullptr, &train, validation);
}

void Trainer::fit_epochs(const Dataset* train, const BatchSource* stream, const Dataset& validation) {
  if (stopped_early_) {
    if (Reporter* r = reporter("lines")) r->on_note(fmt::format("run had stopped early after epoch {}; nothing to do", epoch_));
    return;
  }
  const int64_t examples = stream ? stream->size() : train->size();
  if (options_.group && examples < options_.group->size()) {
    throw Error(fmt::format("the training data has {} examples, fewer than the {} ranks of this run", examples,
                            options_.group->size()));
  }
  const Dataset train_on_device = train ? train->to(device_) : Dataset{};
  const Dataset validation_on_device = validation.to(device_);
  // Drawn on the CPU, whatever the device: the same inputs on every device and every rank; then
  // moved to the device once, as the validation set is, not batch by batch every epoch.
  const Corrupted validation_corrupted =
      options_.validate_corrupted && validation.size() > 0
          ? corrupt_seeded(validation.inputs.cpu(), dynamic_cast<Corrupting&>(*model_).corruption(),
                           static_cast<uint64_t>(options_.seed))
                .to(device_)
          : Corrupted{};
  if (!run_dir_.empty() && writes()) {
    std::filesystem::create_directories(run_dir_);
    // A script's run: its configuration makes the directory one that eval, export, viz and report read.
    std::error_code ec;
    if (!config_.is_null() && !std::filesystem::exists(run_dir_ / kConfigFile, ec)) {
      write_text_atomically(run_dir_ / kConfigFile, json_text(config_, 2) + "\n");
    }
  }
  while (epoch_ < options_.epochs && !stopped_early_) {
    const auto start = Clock::now();
    EpochRecord record = train_epoch(train ? &train_on_device : nullptr, stream);
    const LossSummary val = evaluate(validation_on_device, validation_corrupted);
    record.val_loss = val.total;
    record.val_terms = val.terms;
    record.seconds = seconds_since(start);
    finish_epoch(record);
  }
}

bool trains_on_corrupted_batches(Autoencoder& model) {
  if (dynamic_cast<Corrupting*>(&model)) return true;
  auto* staged = dynamic_cast<Staged*>(&model);
  if (!staged) return false;
  const std::vector<Stage> stages = staged->stages();
  return std::any_of(stages.begin(), stages.end(),
                     [](const Stage& stage) { return dynamic_cast<Corrupting*>(stage.model.get()) != nullptr; });
}

}  // namespace torchae
