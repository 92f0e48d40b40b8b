#include "torchae/models/denoising.h"

#include "torchae/data/image_io.h"
#include "torchae/models/registry.h"

#include <torch/torch.h>

#include <fmt/format.h>

namespace torchae {

DenoisingOptions::DenoisingOptions(UndercompleteOptions backbone) : backbone_(std::move(backbone)) {}

DenoisingImpl::DenoisingImpl(DenoisingOptions options_) : options(std::move(options_)) { reset(); }

namespace {

// The luma of colour images [B, 3, H, W] in all three channels: what a colouriser sees.
torch::Tensor gray(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "denoising: a colouriser takes colour images [B, 3, H, W], got ",
              x.sizes());
  return luma(x).unsqueeze(1).expand_as(x).contiguous();
}

const char* const kScriptLuma = "y = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]";

}  // namespace

void DenoisingImpl::reset() {
  TORCH_CHECK(options.alpha() >= 0 && options.beta() >= 0, "denoising: emphasis weights must be >= 0");
  bins_.reset();
  if (options.chroma_bins() > 0) {
    TORCH_CHECK(options.corruption().kind == CorruptionKind::gray && options.backbone().networks().conv(),
                "denoising: chroma_bins colourises: needs the gray corruption and the conv backbone");
    TORCH_CHECK(options.rebalance() >= 0 && options.rebalance() <= 1 && options.temperature() > 0,
                "denoising: rebalance must be in [0, 1] and temperature > 0");
    bins_.emplace(options.chroma_bins());
    UndercompleteOptions backbone = options.backbone();
    backbone.networks(backbone.networks().classes(bins_->size()));
    backbone.output_activation(Activation::identity).loss(ReconstructionLoss::mse);
    reset_backbone(backbone);
    chroma_kernel_ = register_buffer("chroma_kernel", bins_->kernel());
    chroma_counts_ = register_buffer("chroma_counts", torch::zeros({bins_->size()}, torch::kFloat64));
  } else {
    reset_backbone(options.backbone());
  }
}

void DenoisingImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::Denoising(corruption=" << to_string(options.corruption().kind)
         << ", level=" << options.corruption().level << ", alpha=" << options.alpha() << ", beta=" << options.beta();
  if (bins_) {
    stream << fmt::format(", chroma_bins={} ({} cells), rebalance={}, temperature={}", options.chroma_bins(),
                          bins_->size(), options.rebalance(), options.temperature());
  }
  stream << ")";
}

torch::Tensor DenoisingImpl::colours(const torch::Tensor& scores, const torch::Tensor& y) const {
  return colours_of_scores(scores, chroma_kernel_, y, options.temperature());
}

Output DenoisingImpl::forward(const torch::Tensor& input) {
  if (bins_) {
    const torch::Tensor g = gray(input);
    Output out = backbone_->forward(g);
    out.scores = out.logits;
    out.reconstruction = colours(out.scores, g.narrow(1, 0, 1));
    out.input = g;
    return out;
  }
  if (!is_training()) return backbone_->forward(input);
  return forward_corrupted(corrupt(input, options.corruption()));
}

Output DenoisingImpl::forward_corrupted(const Corrupted& corrupted) {
  if (bins_) return forward(corrupted.input);
  // The inpainting mask is the same in every channel: one channel of it tells the network. A
  // noise map is told each example's sigma (in eval mode, forward estimates it).
  Output out;
  if (backbone_->takes_mask()) {
    out = backbone_->fill(corrupted.input, corrupted.mask.narrow(1, 0, 1).to(corrupted.input.dtype()));
  } else if (backbone_->takes_noise_level()) {
    const torch::Tensor level = noise_level_map(corrupted.level, corrupted.input);
    out = backbone_->denoise(corrupted.input, level);
    out.noise_level = level;
  } else {
    out = backbone_->forward(corrupted.input);
  }
  out.input = corrupted.input;
  out.mask = corrupted.mask;
  return out;
}

Losses DenoisingImpl::loss(const torch::Tensor& target, const Output& output) {
  if (bins_) {
    const int64_t f = target.size(2) / output.scores.size(2);
    const ChromaBins::Soft soft = bins_->soft_encode(chroma(f > 1 ? torch::avg_pool2d(target, f, f) : target));
    if (is_training()) {
      // How often each cell is the nearest to a training pixel of the scores' grid, this batch
      // included, for the rebalancing.
      const torch::Tensor nearest = soft.cells.select(1, 0).flatten().cpu();
      chroma_counts_.add_(torch::bincount(nearest, {}, bins_->size()).to(chroma_counts_.options()));
    }
    // The cross-entropy against the soft target, gathered from its few cells; each pixel
    // weighed by its nearest cell's weight.
    const torch::Tensor ce = -(soft.weights * torch::log_softmax(output.scores, 1).gather(1, soft.cells)).sum(1);
    const torch::Tensor weights =
        bins_->class_weights(chroma_counts_, options.rebalance()).to(ce.device()).index({soft.cells.select(1, 0)});
    const torch::Tensor total = (weights * ce).mean();
    return {total, {{"ce", total}, {"mse", torch::mse_loss(output.reconstruction, target).detach()}}};
  }
  const bool emphasis = output.mask.defined() && (options.alpha() != 1.0 || options.beta() != 1.0);
  if (!emphasis) {
    const torch::Tensor recon = reconstruction_cost(output, target);
    return {recon, {{"recon", recon}}};
  }
  // Vincent et al. 2010, section 4.3: alpha on the corrupted components, beta on the others.
  const torch::Tensor per_element = reconstruction_loss_elements(backbone_->options.loss(), output, target);
  const torch::Tensor weights = torch::where(output.mask, torch::full_like(per_element, options.alpha()),
                                             torch::full_like(per_element, options.beta()));
  const torch::Tensor recon = (weights * per_element).mean();
  return {recon, {{"recon", recon}}};
}

torch::Tensor DenoisingImpl::encode(const torch::Tensor& input) {
  return backbone_->encode(bins_ ? gray(input) : input);
}

torch::Tensor DenoisingImpl::encode_preactivation(const torch::Tensor& input) {
  return backbone_->encode_preactivation(bins_ ? gray(input) : input);
}

Output DenoisingImpl::reconstruct(const torch::Tensor& code) {
  Output out = backbone_->reconstruct(code);
  if (bins_) {
    out.scores = out.logits;
    const int64_t f = backbone_->options.networks().strides().front();
    out.reconstruction =
        colours(out.scores, torch::full({code.size(0), 1, out.scores.size(2) * f, out.scores.size(3) * f}, 0.5,
                                        out.scores.options()));
  }
  return out;
}

torch::Tensor DenoisingImpl::decode(const torch::Tensor& code) {
  return bins_ ? reconstruct(code).reconstruction : backbone_->decode(code);
}

void DenoisingImpl::script(ScriptModel& script) const {
  if (!bins_) {
    backbone_->define_script(script, "backbone.");
    return;
  }
  // The backbone's methods as net_encode, net_decode and net_forward (its scores), then the
  // colours of those scores.
  script.set_scope("net_");
  backbone_->define_script(script, "backbone.");
  script.set_scope("");
  const int64_t f = backbone_->options.networks().strides().front();
  auto colours = [&](const std::string& height, const std::string& width) {
    std::vector<std::string> lines =
        bins_->script_annealed_mean("c", "s", script.tensor("chroma_kernel", chroma_kernel_), options.temperature());
    if (f > 1) lines.push_back(fmt::format("c = torch.upsample_bilinear2d(c, [{}, {}], False, None, None)", height, width));
    lines.push_back("return " + script_rgb_from_luma_chroma("y", "c") + ".clamp(0, 1)");
    return lines;
  };
  const std::string g = "y.expand([-1, 3, -1, -1]).contiguous()";
  script.method("encode(self, x: Tensor) -> Tensor", {kScriptLuma, "return self.net_encode(" + g + ")"});
  std::vector<std::string> decode{"s = self.net_decode(h)"};
  for (auto& line : colours(fmt::format("s.size(2) * {}", f), fmt::format("s.size(3) * {}", f))) decode.push_back(line);
  decode.insert(decode.end() - 1, "y = torch.full_like(c[:, 0:1], 0.5)");
  script.method("decode(self, h: Tensor) -> Tensor", decode);
  std::vector<std::string> forward{kScriptLuma, "s = self.net_forward(" + g + ")"};
  for (auto& line : colours("x.size(2)", "x.size(3)")) forward.push_back(line);
  script.method("forward(self, x: Tensor) -> Tensor", forward);
}

void register_denoising(Registry& registry) {
  registry.add({"denoising",
                "reconstructs the clean input from a corrupted one: gaussian, masking or salt_pepper "
                "noise, optional emphasis alpha/beta on corrupted/clean components (Vincent et al. 2010); for "
                "images also inpaint and gray, the mask or the noise level as an input channel, encoder-decoder "
                "skips and colour as classes over chroma cells (Zhang et al. 2016)",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  UndercompleteOptions backbone = read_undercomplete_options(r, data, UndercompleteOptions(data.shape, 32));
                  BackboneOptions net = backbone.networks();
                  net.mask_input(r.boolean("mask_input", net.mask_input()));
                  net.noise_map(r.boolean("noise_map", net.noise_map()));
                  net.skips(r.boolean("skips", net.skips()));
                  net.prefill(r.integer("prefill", net.prefill(), at_least(0)));
                  net.residual(r.boolean("residual", net.residual()));
                  net.zero_init(r.boolean("zero_init", net.zero_init()));
                  for (const auto& [key, given] : {std::pair{"mask_input", net.mask_input()}, {"noise_map", net.noise_map()},
                                                   {"skips", net.skips()},
                                                   {"prefill", net.prefill() > 0}, {"residual", net.residual()},
                                                   {"zero_init", net.zero_init()}}) {
                    r.require(!given || net.conv(), key, "needs the conv backbone (model.backbone conv)");
                  }
                  // The rest (prefill needs mask_input, skips a fully convolutional network) is the
                  // conv options' own rule set.
                  if (net.conv()) {
                    if (const auto problem = net.conv_options(net.code_size()).problem()) {
                      r.require(false, problem->first, problem->second);
                    }
                  }
                  if (net.residual()) {
                    // The output is the input image plus the network's correction: not squashed.
                    r.require(!r.given("output_activation") || backbone.output_activation() == Activation::identity,
                              "output_activation", "a residual network adds its output to the input image: identity");
                    r.require(!r.given("loss") || backbone.loss() == ReconstructionLoss::mse, "loss",
                              "bce needs a sigmoid output, a residual network's is the identity: mse");
                    backbone.output_activation(Activation::identity).loss(ReconstructionLoss::mse);
                    r.resolve("output_activation", "identity");
                    r.resolve("loss", "mse");
                  }
                  DenoisingOptions o(backbone.networks(net));
                  o.corruption(CorruptionOptions::from(r, data, "masking", 0.25));
                  r.require(!net.mask_input() || o.corruption().kind == CorruptionKind::inpaint, "mask_input",
                            "gives the network the inpainting mask: needs corruption \"inpaint\"");
                  r.require(!net.noise_map() || o.corruption().kind == CorruptionKind::gaussian, "noise_map",
                            "gives the network the noise's sigma: needs corruption \"gaussian\"");
                  o.alpha(r.number("alpha", o.alpha(), at_least(0)));
                  o.beta(r.number("beta", o.beta(), at_least(0)));
                  o.chroma_bins(r.number("chroma_bins", o.chroma_bins(), at_least(0)));
                  if (o.chroma_bins() > 0) {
                    r.require(o.chroma_bins() <= 0.5, "chroma_bins", "is the side of a cell of the chroma plane, in (0, 0.5]");
                    r.require(o.corruption().kind == CorruptionKind::gray, "chroma_bins",
                              "colourises by classification: needs corruption \"gray\"");
                    r.require(net.conv(), "chroma_bins", "needs the conv backbone (model.backbone conv)");
                    r.require(!net.residual(), "residual", "adds to the image, a colouriser outputs class scores");
                    r.require(o.alpha() == 1 && o.beta() == 1, "chroma_bins",
                              "weighs the colour classes itself (rebalance): alpha and beta do not apply");
                    r.require(!r.given("loss") || backbone.loss() == ReconstructionLoss::mse, "loss",
                              "a colouriser by classification is trained by cross-entropy; its colours are scored by mse");
                    r.require(!r.given("output_activation") || backbone.output_activation() == Activation::identity,
                              "output_activation", "a colouriser's class scores have no output activation");
                    r.resolve("loss", "mse");
                    r.resolve("output_activation", "identity");
                    o.rebalance(r.number("rebalance", o.rebalance(), between(0, 1)));
                    o.temperature(r.number("temperature", o.temperature(), greater_than(0)));
                  }
                  r.finish();
                  return [o] { return Denoising(o).ptr(); };
                },
                stack_layer_defaults});
}

}  // namespace torchae
