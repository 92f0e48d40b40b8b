#include "torchae/viz/report.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/export/export.h"
#include "torchae/train/run.h"
#include "torchae/version.h"
#include "torchae/viz/pictures.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <set>
#include <vector>

namespace torchae {

namespace fs = std::filesystem;

std::string base64(const std::string& bytes) {
  static const char* const kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (const int shift : {18, 12, 6, 0}) out += kAlphabet[(v >> shift) & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (two ? static_cast<uint8_t>(bytes[i + 1]) << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += two ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

namespace {

std::string png_data_uri(const torch::Tensor& picture) {
  const torch::Tensor rgb = picture.contiguous();
  cv::Mat image(static_cast<int>(rgb.size(0)), static_cast<int>(rgb.size(1)), CV_8UC3, rgb.data_ptr<uint8_t>());
  cv::Mat bgr;
  cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", bgr, bytes)) throw Error("report: cannot encode a picture as PNG");
  return "data:image/png;base64," + base64(std::string(bytes.begin(), bytes.end()));
}

std::string number_text(const Json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return fmt::format("{:.6g}", v.get<double>());
  return v.dump();
}

// The metrics as two tables: each test_X beside pca_test_X, then every other scalar figure (the
// other baselines, likelihoods, accuracies, retrieval), by its dotted name; curves are left out.
std::string metrics_html(const Json& metrics) {
  const Json flat = metrics.flatten();
  std::string paired, others;
  std::set<std::string> shown;
  for (const auto& [pointer, value] : flat.items()) {
    const std::string key = pointer.substr(1);
    if (key.rfind("test_", 0) != 0 || key.find('/') != std::string::npos || !value.is_number()) continue;
    const auto pca = flat.find("/pca_" + key);
    paired += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n", markup_escaped(key), number_text(value),
                          pca != flat.end() ? number_text(*pca) : "");
    shown.insert(key);
    if (pca != flat.end()) shown.insert("pca_" + key);
  }
  for (const auto& [pointer, value] : flat.items()) {
    std::string key = pointer.substr(1);
    if (shown.count(key) || !(value.is_number() || value.is_string() || value.is_boolean())) continue;
    if (key.find("pr_curve") != std::string::npos || key.rfind("checkpoint", 0) == 0) continue;
    std::replace(key.begin(), key.end(), '/', '.');
    others += fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", markup_escaped(key),
                          markup_escaped(value.is_string() ? value.get<std::string>() : number_text(value)));
  }
  std::string html;
  if (!paired.empty()) {
    html += "<table><thead><tr><th>test metric</th><th>this model</th><th>PCA, same code size</th></tr></thead>\n<tbody>" +
            paired + "</tbody></table>\n";
  }
  if (!others.empty()) {
    html += "<h3>Other figures and baselines</h3>\n<table><thead><tr><th>figure</th><th>value</th></tr></thead>\n<tbody>" +
            others + "</tbody></table>\n";
  }
  return html;
}

// The exported archives of a run: in its directory, or beside it named after it (zoo build).
std::vector<fs::path> archives_of(const fs::path& run_dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    if (entry.path().extension() == ".pt" && entry.path().filename() != kCheckpointFile) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  const fs::path name = run_dir.filename().empty() ? run_dir.parent_path() : run_dir;
  const fs::path beside = name.string() + ".pt";
  if (fs::exists(beside, ec)) found.push_back(beside);
  return found;
}

const char* const kStyle = R"(body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td:nth-child(n+2){font-variant-numeric:tabular-nums}pre{background:#f6f6f6;padding:.8em;overflow:auto}
figure{margin:1em 0}img{max-width:100%;height:auto;image-rendering:pixelated}figcaption{color:#555}
.note{color:#777})";

}  // namespace

fs::path report_run(const fs::path& run_dir, const fs::path& out_arg) {
  const fs::path out = out_arg.empty() ? run_dir / "report.html" : out_arg;
  check_output_path(out, "--out");
  std::error_code ec;
  if (!fs::exists(run_dir / kConfigFile, ec)) {
    throw Error(fmt::format("{}: not a run directory (no {})", run_dir.string(), kConfigFile));
  }
  const Json config = load_json_file(run_dir / kConfigFile);
  const std::string family = config.contains("model") ? config["model"].value("family", "?") : "?";
  const fs::path name = run_dir.filename().empty() ? run_dir.parent_path().filename() : run_dir.filename();

  std::string html = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>torchae run {}</title>\n"
      "<style>{}</style>\n</head>\n<body>\n<h1>Run {}: {}</h1>\n<p class=\"note\">{} &middot; torchae {}</p>\n",
      markup_escaped(name.string()), kStyle, markup_escaped(name.string()), markup_escaped(family),
      markup_escaped(fs::absolute(run_dir).lexically_normal().string()), TORCHAE_VERSION);

  html += "<h2>Training curves</h2>\n";
  try {
    html += plot_svg(training_curves(run_dir), 640);
  } catch (const Error& e) {
    html += fmt::format("<p class=\"note\">No curves: {}</p>\n", markup_escaped(e.what()));
  }

  Json metrics;
  if (checkpoint_position(run_dir).stage >= 0) {
    metrics = fs::exists(run_dir / kEvalFile, ec) ? load_json_file(run_dir / kEvalFile) : Json();
    if (!metrics.is_object() || metrics.value("checkpoint", Json()) != checkpoint_json(run_dir)) {
      metrics = evaluate_run(run_dir);
    }
  }
  html += "<h2>Test metrics</h2>\n";
  html += metrics.is_object() ? metrics_html(metrics)
                              : "<p class=\"note\">No checkpoint yet: nothing to evaluate.</p>\n";

  html += "<h2>Pictures</h2>\n";
  if (metrics.is_object()) {
    static const std::vector<std::pair<const char*, const char*>> kinds{
        {"recon", "reconstructions"}, {"filters", "first-layer filters"}, {"maximize", "maximising inputs"},
        {"latent", "codes in the plane"}, {"interp", "interpolations"}, {"samples", "samples"},
        {"chains", "Gibbs chains"}, {"pr", "retrieval precision and recall"}};
    std::string missing;
    for (const auto& [what, caption] : kinds) {
      try {
        const int64_t count = std::string(what) == "latent" ? 2000 : default_viz_count(what);
        const torch::Tensor picture = viz_picture(run_dir, what, -1, count);
        html += fmt::format("<figure><img src=\"{}\" alt=\"{}\" width=\"{}\"><figcaption>{} "
                            "(<code>torchae viz --what {}</code>)</figcaption></figure>\n",
                            png_data_uri(picture), caption, picture.size(1), caption, what);
      } catch (const Error& e) {
        missing += fmt::format("<li><code>{}</code>: {}</li>\n", what, markup_escaped(e.what()));
      } catch (const c10::Error& e) {
        // One picture the model cannot give is named; the page is still written.
        const std::string text = e.what_without_backtrace();
        missing += fmt::format("<li><code>{}</code>: {}</li>\n", what, markup_escaped(text.substr(0, text.find('\n'))));
      }
    }
    if (!missing.empty()) html += "<p class=\"note\">Not drawn for this model:</p>\n<ul class=\"note\">\n" + missing + "</ul>\n";
  }

  html += "<h2>Configuration</h2>\n<pre>" + markup_escaped(json_text(config, 2)) + "</pre>\n";

  html += "<h2>Exported model</h2>\n";
  const std::vector<fs::path> archives = archives_of(run_dir);
  if (archives.empty()) {
    html += fmt::format("<p class=\"note\">None found beside the run; <code>torchae export --run {} --out "
                        "MODEL.pt</code> writes one.</p>\n",
                        markup_escaped(run_dir.string()));
  }
  for (const auto& archive : archives) {
    try {
      html += fmt::format("<h3>{}</h3>\n<pre>{}</pre>\n", markup_escaped(archive.string()),
                          markup_escaped(json_text(read_model_card(archive), 2)));
    } catch (const Error& e) {
      html += fmt::format("<p class=\"note\">{}: not a torchae archive ({})</p>\n", markup_escaped(archive.string()),
                          markup_escaped(e.what()));
    }
  }
  html += "</body>\n</html>\n";
  write_text_atomically(out, html);
  return out;
}

}  // namespace torchae
