#pragma once

#include "torchae/core/config.h"

#include <filesystem>
#include <string>

namespace torchae {

/// `torchae report`: one self-contained HTML page for the trained run in `run_dir`, written to
/// `out` (default: run_dir/report.html) atomically; returns the path written. The page holds the
/// resolved configuration; the training curves as inline SVG (`training_curves`); the test metrics
/// beside PCA's with the same code size and the other baselines the run's evaluation reports (from
/// eval.json when it speaks for the current checkpoint, else evaluated now, as export does); every
/// picture `viz` can draw for the run's model, inline as PNG (a kind the model cannot draw is named,
/// with the reason); and the model card of an exported archive found beside the run (run_dir/*.pt
/// but the checkpoint, or <run_dir>.pt as `zoo build` writes it). No script, nothing fetched.
///
///   report_run("runs/ae");   // runs/ae/report.html
std::filesystem::path report_run(const std::filesystem::path& run_dir, const std::filesystem::path& out = {});

/// The standard base64 encoding (RFC 4648, with padding) of `bytes`.
std::string base64(const std::string& bytes);

}  // namespace torchae
