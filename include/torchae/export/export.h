#pragma once

#include "torchae/core/config.h"
#include "torchae/export/script.h"
#include "torchae/models/autoencoder.h"

#include <torch/script.h>

#include <filesystem>
#include <string>
#include <vector>

namespace torchae {

/// The name of the model card inside an archive (a TorchScript extra file, stored under
/// extra/): JSON with the family, resolved config, data, input shape and value range,
/// training epochs, evaluation metrics, torchae version and creation date.
///
///   torch::jit::ExtraFilesMap extra{{kModelCardFile, ""}};
///   torch::jit::Module m = torch::jit::load("model.pt", torch::kCPU, extra);
///   Json card = Json::parse(extra[kModelCardFile]);
inline constexpr const char* kModelCardFile = "model_card.json";

/// The largest difference `to_torchscript` accepts between the compiled module and the
/// native one on the probe batch, relative to the largest native value when that is above 1
/// (float rounding grows with the values: a deep feature map's may be in the hundreds).
inline constexpr double kExportTolerance = 1e-5;

/// Compiles `model`'s own TorchScript description (`Autoencoder::script`) into a module that
/// needs nothing of torchae: its tensors are copied to the CPU, it is in eval mode. It is then
/// checked against the native model (in eval mode, on the CPU) on `probe`, a batch of inputs:
/// `forward`, `encode`, and `decode` of the native codes must agree within kExportTolerance,
/// or an Error says which method differed and by how much. A family without a TorchScript
/// description fails with an Error too. The module's int attribute `size_multiple` records
/// `Autoencoder::size_multiple()`. The model is left in eval mode on the CPU.
torch::jit::Module to_torchscript(Autoencoder& model, const torch::Tensor& probe);

/// Writes `module` to `path` with `card` as its model card, atomically.
void save_torchscript(const torch::jit::Module& module, const Json& card, const std::filesystem::path& path);

/// Loads a TorchScript archive on the CPU, in eval mode, with a one-line Error naming the file
/// when it is missing or LibTorch cannot load it.
torch::jit::Module load_torchscript(const std::filesystem::path& archive);

/// Reads the model card of an archive written by torchae, with a one-line Error when the file
/// is missing, not a TorchScript archive, or has no card.
Json read_model_card(const std::filesystem::path& archive);

/// The restoration tasks ("denoise", "inpaint", "colorize") a model trained under `model_config`
/// (a run's model section) is for, from its corruption: gaussian and salt_pepper denoise, masking
/// denoises and inpaints, inpaint inpaints, gray colourises; none for a model trained without
/// corruption (a plain autoencoder, which only reconstructs). The card's "trained_for" records it.
std::vector<std::string> restoration_tasks(const Json& model_config);

/// The image shape {C, H, W} a model card gives as input.shape, or an Error naming `archive`.
std::vector<int64_t> card_image_shape(const Json& card, const std::filesystem::path& archive);

/// Starts `model` from a trained one (`train.init`). `source` is an archive (a path, or
/// "zoo:NAME") or a run directory:
/// - an archive's tensors are written into the tensors of `model` they were exported from:
///   `model` describes itself (`Autoencoder::script`), and each tensor of the description that
///   is one of its parameters or buffers takes the archive's tensor of the same name. One the
///   archive lacks, or holds in another shape or type, is an Error naming it. Parameters the
///   description leaves out (used only in training, such as an adversary) keep their
///   initialisation, and so do buffers (a colouriser's class counts start afresh);
/// - a run directory's checkpoint must fit `model` entirely, as on resume.
/// `model_config` is `model`'s resolved section. Returns warnings, one line each: the parameters
/// the source did not give, and the model settings in which the source was trained otherwise
/// (its card's or its checkpoint's configuration): fine-tuning may change how a model is
/// trained (a noise level, a loss), and the shapes alone check that the networks are alike.
std::vector<std::string> init_from_trained(Autoencoder& model, const Json& model_config,
                                           const std::filesystem::path& source);

/// `torchae export`: the trained run in `run_dir` as a TorchScript archive at `out`, checked
/// against the native model on inputs drawn from the run's test split. The run is evaluated
/// first when it has no eval.json yet, so that the card carries its metrics; `card_extra`'s
/// keys are added to the card. Returns the card.
Json export_run(const std::filesystem::path& run_dir, const std::filesystem::path& out,
                const Json& card_extra = Json::object());

}  // namespace torchae
