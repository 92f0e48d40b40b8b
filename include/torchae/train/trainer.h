#pragma once

#include "torchae/core/config.h"
#include "torchae/core/io.h"
#include "torchae/data/dataset.h"
#include "torchae/data/stream.h"
#include "torchae/models/autoencoder.h"
#include "torchae/train/distributed.h"

#include <ATen/core/Generator.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/output-archive.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torchae {

struct EpochRecord;
struct TrainingStage;
class AdamWorker;
class HelperThread;

/// Where training stands within an epoch, for a `Reporter`.
struct BatchProgress {
  int64_t epoch = 0;  // 1-based: the epoch under way
  int64_t epochs = 0;
  int64_t done = 0;  // examples of the epoch stepped on so far
  int64_t total = 0;
  double loss = 0.0;  // the epoch's mean loss so far
  double seconds = 0.0;  // since the epoch began
};

/// What a `Trainer` tells as it trains. Every method does nothing by default, and a trainer
/// without a reporter tells nothing: the library prints nothing unless asked. The command
/// line installs `console_reporter()`; a script does the same in one line:
///
///   options.reporter = torchae::console_reporter();
///
/// A trainer calls it from its own thread, on rank 0 only in a data-parallel run, and not at all
/// under train.progress "none"; `on_batch` only under "auto".
class Reporter {
 public:
  virtual ~Reporter() = default;
  /// After each batch of an epoch.
  virtual void on_batch(const TrainingStage& /*stage*/, const BatchProgress& /*progress*/) {}
  /// Before an epoch's figures are reported, or an error ends the epoch (a bar drawn in place
  /// is cleared).
  virtual void on_batches_end(const TrainingStage& /*stage*/) {}
  /// After each epoch, its metrics line and checkpoint written; `epochs`: the stage's total.
  virtual void on_epoch_end(const TrainingStage& /*stage*/, const EpochRecord& /*record*/, int64_t /*epochs*/) {}
  /// A line worth telling: an early stop, a run with nothing left to do.
  virtual void on_note(const std::string& /*text*/) {}
  /// A setting that is allowed but probably a mistake (`BuiltModel::warnings`), before training.
  virtual void on_warning(const std::string& /*text*/) {}
};

/// The command line's reporter: under train.progress "auto", a one-line progress bar on stderr
/// when stderr is a terminal, redrawn in place at most ten times a second and fitted to the
/// terminal's width (read each redraw: it shortens by dropping the ETA, then samples/s, then
/// narrowing the bar, and never wraps); then one line per epoch and the notes on stdout; warnings
/// on stderr as "torchae: warning: ...".
std::shared_ptr<Reporter> console_reporter();

/// The progress bar's text for a terminal `columns` wide: at most columns - 1 characters
/// (writing the last column would wrap on some terminals), whatever the width.
std::string progress_line(const std::string& stage, const BatchProgress& progress, int columns);

/// Chooses OpenBLAS's thread count for a training run by timing the run's own steps
/// (`train.blas_threads` "auto"). OpenBLAS runs each matrix product on all its threads, and on a
/// small machine that is often slower than one thread for a small step's products (on 2 vCPUs,
/// the reference model at batch 32 stepped 1.3x as fast on one thread; at 512, 1.3x as fast on
/// two), while which wins moves with the machine's load, so no rule of size chooses it.
/// The run's first steps are the trial: `warmup` steps on the first candidate, untimed, then
/// `rounds` rounds in which each candidate runs `steps_per_turn` steps in turn (the order
/// reversed every other round, so that a drift in the machine's speed falls on both alike). The
/// choice is the candidate whose median over the rounds of its seconds per step is least.
/// The candidates' counts give different roundings (OpenBLAS splits a product otherwise), so
/// two runs that choose differently do not compute the same thing: what the tuner measured is
/// kept (`timings`, `restore`), so that a resumed run continues as it began.
class BlasThreadTuner {
 public:
  /// Candidates: `threads` (OpenBLAS's count in this process) and its halvings down to 1.
  explicit BlasThreadTuner(int64_t threads, int64_t warmup = 3, int64_t rounds = 4, int64_t steps_per_turn = 3);
  const std::vector<int64_t>& candidates() const { return candidates_; }
  /// The count the next step runs at: a candidate while measuring, then the choice.
  int64_t next() const;
  /// The seconds the step run at `next()` took.
  void record(double seconds);
  /// Every trial step has been timed: `decide` is due.
  bool measured() const;
  /// Per candidate, the median over the rounds of its seconds per step (`measured()` first).
  std::vector<double> seconds_per_step() const;
  /// Chooses the candidate of least `seconds` (per candidate, as `seconds_per_step` gives them,
  /// or their sums over the ranks of a data-parallel run, so that every rank chooses alike).
  void decide(const std::vector<double>& seconds);
  bool decided() const { return choice_ > 0; }
  int64_t choice() const { return choice_; }
  /// The trial steps' seconds so far, in order: with `restore`, what a checkpoint keeps.
  const std::vector<double>& timings() const { return timings_; }
  /// Continues from `timings` (another tuner's, of the same candidates and schedule) and, when
  /// the run had chosen, its `choice`.
  void restore(std::vector<double> timings, int64_t choice);

 private:
  /// The candidate (index) that trial step `step` runs at.
  std::size_t candidate_at(std::size_t step) const;
  std::vector<int64_t> candidates_;
  int64_t warmup_, rounds_, steps_per_turn_;
  std::vector<double> timings_;
  int64_t choice_ = 0;
};

/// `TrainOptions::blas_threads` for "auto".
inline constexpr int64_t kAutoBlasThreads = -1;

/// The `train` section of the configuration.
struct TrainOptions {
  int64_t epochs = 10;
  int64_t batch_size = 128;
  double lr = 1e-3;
  /// Seeds weight initialisation (the global generator) and the shuffling of batches.
  int64_t seed = 0;
  /// "auto", "cpu", "cuda" or "cuda:N".
  std::string device = "auto";
  /// "adam" or "sgd".
  std::string optimizer = "adam";
  /// Adam's (beta1, beta2).
  double beta1 = 0.9;
  double beta2 = 0.999;
  /// SGD's momentum and Nesterov flag.
  double momentum = 0.0;
  bool nesterov = false;
  /// L2 penalty added to the gradient (both optimizers).
  double weight_decay = 0.0;
  /// Learning-rate schedule per epoch: "none", "step" (times gamma every step_size epochs)
  /// or "cosine" (from lr down to min_lr over `epochs`).
  std::string schedule = "none";
  int64_t step_size = 10;
  double gamma = 0.1;
  double min_lr = 0.0;
  /// Clip the global gradient norm to this value (0: off).
  double clip_grad_norm = 0.0;
  /// Stop after this many epochs without a validation improvement of more than min_delta
  /// (0: never stop early).
  int64_t patience = 0;
  double min_delta = 0.0;
  /// Validate a model trained on corrupted batches (`Corrupting`: the denoising family, a
  /// stack's denoising layers while they pretrain) on its validation set corrupted as in
  /// training, scored against the clean one: what it is trained to do. The corruption is drawn
  /// once, before the first epoch, from a generator of its own seeded by `seed` (the training's
  /// random numbers untouched), so every epoch, every rank and a resumed run see the same inputs.
  /// false: validated on the clean inputs, as it runs in eval mode (a denoiser's validation loss
  /// then says how much it changes a clean input, not how well it restores one).
  bool validate_corrupted = false;
  /// Each training batch's images in a random orientation, drawn for each example: "none";
  /// "flip", mirrored left to right or not; "dihedral", any of the eight symmetries of the square
  /// (mirrored or not, turned by a multiple of 90 degrees), for square images. Drawn from a
  /// generator of its own seeded by (`seed`, epoch, batch), the training's random numbers
  /// untouched: a resumed run draws what the uninterrupted one did, and the ranks of a
  /// data-parallel run what one process would. Validation sees the images as they are.
  std::string augment = "none";
  /// Starts the model from a trained one rather than from its initialisation: an exported
  /// archive (a path, or "zoo:NAME") or a run directory ("" : none). Applied when a run starts
  /// (not when it resumes from a checkpoint); the optimizer's state and the schedule start
  /// afresh. See `init_from_trained`.
  std::string init;
  /// Intra-op threads. 0: on the CPU, a model with convolutions takes every core the process
  /// may use (`cores_per_process`: oneDNN's convolutions run on them; 1.0x to 1.7x from 1 to 2
  /// threads on the restoration recipes here, on a shared machine), any other model LibTorch's
  /// default (its matrix products run on OpenBLAS, which has threads of its own).
  int64_t threads = 0;
  /// OpenBLAS's threads, which run the CPU's matrix products (LibTorch's Linear layers and the
  /// transposed convolutions of an exported archive): 0 leaves them as they are (OpenBLAS's own
  /// count from OPENBLAS_NUM_THREADS, else every core, unless a program set another); N sets N;
  /// `kAutoBlasThreads` ("auto" in the configuration) has a `BlasThreadTuner` choose them from
  /// the run's first steps, on the CPU. A trainer that set them sets the count it found again
  /// when it is destroyed. A run that chooses is reproducible through its checkpoint, not from
  /// its seed alone.
  int64_t blas_threads = 0;
  /// On the CPU, in a process with two cores: the Linear layers of the model's MLPs make each
  /// matrix product in two halves at once, on two threads of OpenBLAS's one-thread kernel
  /// (`PairedProducts`), forward and backward; faster here than OpenBLAS's own two threads at
  /// every batch size measured (see the README's Speed). Results change by rounding, not more.
  bool paired_products = true;
  /// What the `reporter` is told: "auto" (batches and epochs: a progress bar on a terminal,
  /// epoch lines otherwise), "lines" (epochs) or "none".
  std::string progress = "auto";
  /// Who is told how training goes (`Reporter`), not read from the configuration; null: no one.
  std::shared_ptr<Reporter> reporter;
  /// The ranks of a data-parallel run (`join_process_group`), not read from the configuration;
  /// null: one process. With a group, `batch_size` stays the global batch: each rank steps on its
  /// part of every batch, gradients are summed over the ranks, and rank 0 alone writes and prints.
  std::shared_ptr<ProcessGroup> group;

  static TrainOptions from(OptionReader& reader);
  /// The section as `from` resolves it: what config.json holds for these options.
  Json to_json() const;
  /// The learning rate of epoch `epoch` (0-based) under the schedule.
  double lr_at(int64_t epoch) const;
};

/// One epoch's figures, as written to metrics.jsonl.
struct EpochRecord {
  int64_t epoch = 0;  // 1-based: the number of epochs completed
  double lr = 0.0;
  double train_loss = 0.0;
  std::vector<std::pair<std::string, double>> train_terms;
  double val_loss = 0.0;
  std::vector<std::pair<std::string, double>> val_terms;
  /// The stage's tag ({"phase": ..., "layer": ...}) and index; empty for a run of one stage.
  Json tag = Json::object();
  int64_t stage = 0;
  double seconds = 0.0;
  double samples_per_s = 0.0;
  /// Seconds the training step waited for its batches in the epoch (with data in memory, the
  /// time taken to gather them); in a data-parallel run, rank 0's.
  double data_wait_s = 0.0;
  /// Files skipped as unreadable in the epoch (a streamed image folder), over all ranks.
  int64_t data_skipped = 0;

  Json to_json() const;
};

/// Where a trainer sits in a run of several stages (a stacked model's pretraining, fine-tuning
/// and classifier phases, each driven by its own `Trainer`).
struct TrainingStage {
  /// 0-based position in the run. The checkpoint records it; metrics.jsonl keeps the lines of
  /// earlier stages when this one rewrites its own.
  int64_t index = 0;
  /// Fields added to every metrics line, e.g. {"phase": "pretrain", "layer": 2}.
  Json tag = Json::object();
  /// Printed before each epoch line, e.g. "pretrain layer 2".
  std::string name;
  /// The whole model the trained one is part of (a layer of a stack): the checkpoint holds all
  /// of it, so that a run can be evaluated, exported or resumed from any stage. Null: the
  /// trained model is the whole model.
  torch::nn::Module* whole = nullptr;
};

/// Mean loss and terms of a model over a data set.
struct LossSummary {
  double total = 0.0;
  std::vector<std::pair<std::string, double>> terms;
};

/// The device a trainer with `options` works on: train.device resolved, and in a data-parallel
/// run on CUDA without a device index, the GPU of the rank's LOCAL_RANK.
torch::Device training_device(const TrainOptions& options);

/// The generic trainer: it drives any `Autoencoder` through its `forward` and `loss`, and
/// knows nothing of families. With a run directory it writes metrics.jsonl (one line per
/// epoch) and checkpoint.pt (model, optimizer, epoch, RNG state, early-stopping state, stage;
/// written atomically at the end of each epoch), and `resume()` continues a run exactly. A
/// model whose objective is `supervised()` is given each batch's labels; an `Adversarial`
/// model's adversary is stepped after the model, by a second optimizer. With `options.group` it is
/// data-parallel (DistributedDataParallel's semantics): parameters are broadcast from rank 0 when
/// it is made, each rank steps on its shard of every global batch (one shuffled order that every
/// rank derives from the seed), gradients are summed over the ranks in buckets, weighted by each
/// rank's share of the batch, and losses, validation, early stopping and the NaN guard use figures
/// reduced over the ranks, so every rank decides alike. Rank 0 alone writes the run directory; the
/// checkpoint holds every rank's random-number state.
///
///   Trainer trainer(model, options, "runs/ae");
///   trainer.fit(data.train, data.validation);
class Trainer {
 public:
  Trainer(std::shared_ptr<Autoencoder> model, TrainOptions options, std::filesystem::path run_dir = {},
          TrainingStage stage = {});
  ~Trainer();

  /// Restores run_dir/checkpoint.pt; false when there is none. Refuses a checkpoint written
  /// by another stage.
  bool resume();
  /// Trains from the current epoch up to options.epochs (or an early stop).
  void fit(const Dataset& train, const Dataset& validation);
  /// The same on a streamed training set: each epoch's batches are loaded by `loader`'s threads
  /// while the model trains, in the order they would have in memory (a `shuffled()` source is
  /// shuffled by the same generator), so a run resumed at any epoch continues exactly.
  void fit(const BatchSource& train, const Dataset& validation, LoaderOptions loader);
  /// One optimisation step on a batch already on the trainer's device (`labels`: the batch's,
  /// needed when the model's objective is supervised). In a data-parallel run, `batch` is this
  /// rank's part of a global batch of equal parts, and the losses returned are the global batch's.
  Losses step(const torch::Tensor& batch, const torch::Tensor& labels = {});
  /// The run's resolved configuration, recorded in every checkpoint (`checkpoint_config`): the
  /// config.json a resume, an eval or an export reads is checked against it. With a run
  /// directory that has no config.json yet (a program's own run, `run_config`), `fit` writes it.
  void record_config(Json config) { config_ = std::move(config); }
  /// Called after each epoch, once its metrics line and checkpoint are written.
  void on_epoch_end(std::function<void(const EpochRecord&)> callback) { on_epoch_end_ = std::move(callback); }
  /// Mean loss over `data` in eval mode, without gradients (data already on the trainer's
  /// device is used in place).
  LossSummary evaluate(const Dataset& data);
  /// The same on `corrupted`, a corruption of `data`'s inputs, with a `Corrupting` model: its
  /// `forward_corrupted` of each batch scored against the clean batch.
  LossSummary evaluate(const Dataset& data, const Corrupted& corrupted);

  int64_t epochs_done() const { return epoch_; }
  bool stopped_early() const { return stopped_early_; }
  const torch::Device& device() const { return device_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  /// With train.blas_threads "auto" on the CPU, the tuner choosing OpenBLAS's threads; else null.
  const BlasThreadTuner* blas_tuner() const { return blas_tuner_.get(); }
  /// Whether the steps' Linear products are paired (`TrainOptions::paired_products`, two cores).
  bool paired_products() const { return paired_; }

 private:
  /// The epochs of `fit`, on `train` in memory (on the device) or streamed.
  void fit_epochs(const Dataset* train, const BatchSource* stream, const Dataset& validation);
  /// One pass over the training set, batch by batch: the epoch's record without its validation
  /// figures and time.
  EpochRecord train_epoch(const Dataset* train, const BatchSource* stream);
  /// Part `part` of `parts` of batch `batch` of this epoch (`count` examples in all), in the
  /// random orientations of `augment`.
  torch::Tensor augmented(const torch::Tensor& images, int64_t batch, int64_t count, int part, int parts) const;
  /// Early-stopping bookkeeping, then the metrics line, the checkpoint, the epoch line and the
  /// callback of the epoch just done.
  void finish_epoch(const EpochRecord& record);
  /// A step on this rank's `count` examples of a global batch of `global_count`.
  Losses step_part(const torch::Tensor& batch, const torch::Tensor& labels, int64_t global_count);
  /// What checkpoint.pt holds after the epoch just done; `rank_rng`: every rank's generator states
  /// in a data-parallel run ({"cpu": [W, S], "cuda": ...}).
  torch::serialize::OutputArchive checkpoint(const std::vector<std::pair<std::string, torch::Tensor>>& rank_rng) const;
  /// Whether this process writes the run directory and prints (rank 0, or the only process).
  bool writes() const { return !options_.group || options_.group->is_writer(); }
  /// The reporter to tell, under train.progress `at_least` ("lines" or "auto"); null when none is.
  Reporter* reporter(const char* at_least) const;
  /// A rank other than 0 draws its own random numbers (noise, dropout, samples): its generator
  /// starts from train.seed, its rank and `epoch`.
  void seed_rank_generator(int64_t epoch) const;
  /// metrics.jsonl's text with `record`'s line.
  std::string metrics_with(const EpochRecord& record) const;
  /// Writes metrics.jsonl and checkpoint.pt of the epoch just done, together.
  void save(const EpochRecord& record) const;
  /// The model's losses on a batch: `loss`, or `supervised_loss` with the labels.
  Losses losses_of(const torch::Tensor& batch, const torch::Tensor& labels, const Output& output);
  /// Records a step's `seconds` with the tuner and, once it has measured every candidate, sets
  /// OpenBLAS's threads to its choice (every rank's, in a data-parallel run).
  void tune_blas_threads(double seconds);
  /// What the checkpoint holds as "model".
  torch::nn::Module& saved_module() const { return stage_.whole ? *stage_.whole : model_->module(); }

  std::shared_ptr<Autoencoder> model_;
  TrainOptions options_;
  std::filesystem::path run_dir_;
  TrainingStage stage_;
  Json config_;
  std::function<void(const EpochRecord&)> on_epoch_end_;
  torch::Device device_;
  std::vector<torch::Tensor> parameters_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  /// The adversary of an `Adversarial` model, its parameters and its optimizer (else null).
  Adversarial* adversary_ = nullptr;
  std::vector<torch::Tensor> adversary_parameters_;
  std::unique_ptr<torch::optim::Optimizer> adversary_optimizer_;
  /// A data-parallel run's gradient all-reduce, for the model and its adversary.
  std::unique_ptr<GradientReducer> reducer_, adversary_reducer_;
  /// The names of the loss terms, for a rank whose part of a batch is empty.
  std::vector<std::string> term_names_;
  at::Generator shuffle_;
  LoaderOptions loader_;
  int64_t epoch_ = 0;
  double best_val_;
  int64_t bad_epochs_ = 0;
  bool stopped_early_ = false;
  /// OpenBLAS's threads for each step (0: left as they are), and, with "auto", what chooses them;
  /// the count before this trainer, which its destructor sets again when it set another.
  int64_t step_blas_threads_ = 0;
  int64_t blas_threads_before_ = 0;
  std::unique_ptr<BlasThreadTuner> blas_tuner_;
  /// Whether the products are paired (`paired_products`, on two cores), and whether Adam's update
  /// takes a second core (Adam on the CPU with two cores or more, one process, no adversary, no
  /// clipping): behind backward on `adam_worker_` for steps whose arithmetic runs on one core
  /// (products not paired), else in halves on `helper_` after backward.
  bool paired_ = false, adam_on_two_cores_ = false;
  /// The second thread of the paired products and of Adam's halves, when either is wanted.
  std::unique_ptr<HelperThread> helper_;
  std::unique_ptr<AdamWorker> adam_worker_;
};

/// Whether `model` is trained on corrupted batches (`Corrupting`), or, trained in stages, one of
/// its stages is: what `train.validate_corrupted` needs.
bool trains_on_corrupted_batches(Autoencoder& model);

/// Where a run directory's checkpoint was written: its stage (0 for a run of one stage) and the
/// epochs done in that stage; {-1, 0} when there is no checkpoint.
struct CheckpointPosition {
  int64_t stage = -1;
  int64_t epoch = 0;
};
CheckpointPosition checkpoint_position(const std::filesystem::path& run_dir);
/// The stage a run directory's checkpoint was written in: -1 when there is no checkpoint, 0
/// for a run of one stage.
int64_t checkpoint_stage(const std::filesystem::path& run_dir);

/// The configuration a run directory's checkpoint was trained under (`Trainer::record_config`);
/// null when there is no checkpoint or it records none.
Json checkpoint_config(const std::filesystem::path& run_dir);

/// A tensor's type and shape as error messages give them: "Float [4, 8]".
std::string shape_of(const torch::Tensor& t);

/// Loads the model part of a checkpoint written by `Trainer` into `model`, on `device`. A
/// checkpoint that does not fit the model (a tensor missing, of another shape or type, or one the
/// model has not) is an Error naming the first mismatch; nothing of it is reshaped. Returns the
/// configuration the checkpoint records (`checkpoint_config`, read from the same load).
/// `model_is` names `model` in that Error.
inline constexpr const char* kModelOfItsRun = "the model its run's config.json builds";
Json load_model_weights(Autoencoder& model, const std::filesystem::path& checkpoint, const torch::Device& device,
                        const char* model_is = kModelOfItsRun);


}  // namespace torchae
