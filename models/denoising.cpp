#include "torchae/models/denoising.h"

#include "torchae/models/registry.h"

#include <torch/torch.h>

namespace torchae {

DenoisingOptions::DenoisingOptions(UndercompleteOptions backbone) : backbone_(std::move(backbone)) {}

DenoisingImpl::DenoisingImpl(DenoisingOptions options_) : options(std::move(options_)) { reset(); }

void DenoisingImpl::reset() {
  TORCH_CHECK(options.alpha() >= 0 && options.beta() >= 0, "denoising: emphasis weights must be >= 0");
  reset_backbone(options.backbone());
}

void DenoisingImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::Denoising(corruption=" << to_string(options.corruption().kind)
         << ", level=" << options.corruption().level << ", alpha=" << options.alpha() << ", beta=" << options.beta()
         << ")";
}

Output DenoisingImpl::forward(const torch::Tensor& input) {
  if (!is_training()) return backbone_->forward(input);
  const Corrupted corrupted = corrupt(input, options.corruption());
  // The inpainting mask is the same in every channel: one channel of it tells the network.
  Output out = backbone_->takes_mask()
                   ? backbone_->fill(corrupted.input, corrupted.mask.narrow(1, 0, 1).to(input.dtype()))
                   : backbone_->forward(corrupted.input);
  out.input = corrupted.input;
  out.mask = corrupted.mask;
  return out;
}

Losses DenoisingImpl::loss(const torch::Tensor& target, const Output& output) {
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

void register_denoising(Registry& registry) {
  registry.add({"denoising",
                "reconstructs the clean input from a corrupted one: gaussian, masking or salt_pepper "
                "noise, optional emphasis alpha/beta on corrupted/clean components (Vincent et al. 2010); for "
                "images also inpaint and gray, the mask as an input channel and encoder-decoder skips",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  UndercompleteOptions backbone = read_undercomplete_options(r, data, UndercompleteOptions(data.shape, 32));
                  BackboneOptions net = backbone.networks();
                  net.mask_input(r.boolean("mask_input", net.mask_input()));
                  net.skips(r.boolean("skips", net.skips()));
                  net.prefill(r.integer("prefill", net.prefill(), at_least(0)));
                  for (const auto& [key, given] : {std::pair{"mask_input", net.mask_input()}, {"skips", net.skips()},
                                                   {"prefill", net.prefill() > 0}}) {
                    r.require(!given || net.conv(), key, "needs the conv backbone (model.backbone conv)");
                  }
                  // The rest (prefill needs mask_input, skips a fully convolutional network) is the
                  // conv options' own rule set.
                  if (net.conv()) {
                    if (const auto problem = net.conv_options(net.code_size()).problem()) {
                      r.require(false, problem->first, problem->second);
                    }
                  }
                  DenoisingOptions o(backbone.networks(net));
                  o.corruption(CorruptionOptions::from(r, data, "masking", 0.25));
                  r.require(!net.mask_input() || o.corruption().kind == CorruptionKind::inpaint, "mask_input",
                            "gives the network the inpainting mask: needs corruption \"inpaint\"");
                  o.alpha(r.number("alpha", o.alpha(), at_least(0)));
                  o.beta(r.number("beta", o.beta(), at_least(0)));
                  r.finish();
                  return [o] { return Denoising(o).ptr(); };
                },
                stack_layer_defaults});
}

}  // namespace torchae
