#include "torchae/models/ksparse.h"

#include "torchae/models/registry.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <cmath>

namespace torchae {

KSparseOptions::KSparseOptions(UndercompleteOptions backbone) : backbone_(std::move(backbone)) {}

torch::Tensor keep_top_k(const torch::Tensor& code, int64_t k) {
  if (k >= code.size(1)) return code;
  const torch::Tensor kept = std::get<1>(code.topk(k, 1));
  return code * torch::zeros_like(code).scatter_(1, kept, 1.0);
}

KSparseImpl::KSparseImpl(KSparseOptions options_) : options(std::move(options_)) { reset(); }

void KSparseImpl::reset() {
  const int64_t width = options.backbone().networks().code_size();
  TORCH_CHECK(options.k() >= 1 && options.k() <= width, "ksparse: k must be in [1, code_size]");
  TORCH_CHECK(options.anneal_from() == 0 || (options.anneal_from() >= options.k() && options.anneal_from() <= width),
              "ksparse: anneal_from must be 0 or in [k, code_size]");
  TORCH_CHECK(options.encode_alpha() >= 1, "ksparse: encode_alpha must be >= 1");
  reset_backbone(options.backbone());
  current_k_ = options.k();
}

void KSparseImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::KSparse(k=" << options.k() << ", encode_alpha=" << options.encode_alpha()
         << ", anneal_from=" << options.anneal_from() << ")";
}

int64_t KSparseImpl::k_at(int64_t epoch, int64_t epochs) const {
  if (options.anneal_from() <= options.k()) return options.k();
  // Makhzani & Frey (section 3.2): start with a larger k and decrease it linearly to the
  // target over the first part of training, so that fewer units die early on.
  const auto span = std::max<int64_t>(1, std::llround(options.anneal_fraction() * static_cast<double>(epochs)));
  if (epoch >= span) return options.k();
  const double t = static_cast<double>(epoch) / static_cast<double>(span);
  return std::llround(static_cast<double>(options.anneal_from()) -
                      t * static_cast<double>(options.anneal_from() - options.k()));
}

void KSparseImpl::set_progress(int64_t epoch, int64_t epochs) { current_k_ = k_at(epoch, epochs); }

Output KSparseImpl::forward(const torch::Tensor& input) {
  return backbone_->reconstruct(keep_top_k(backbone_->encode(input), current_k_), input.sizes());
}

int64_t KSparseImpl::feature_units() const {
  return std::min<int64_t>(code_size(), std::llround(options.encode_alpha() * static_cast<double>(options.k())));
}

torch::Tensor KSparseImpl::encode(const torch::Tensor& input) {
  return keep_top_k(backbone_->encode(input), is_training() ? current_k_ : feature_units());
}

void KSparseImpl::script(ScriptModel& script) const {
  script.method("keep_top_k(self, h: Tensor, k: int) -> Tensor",
                {"if k >= h.size(1):", "    return h", "kept = torch.topk(h, k, 1)[1]",
                 "return h * torch.zeros_like(h).scatter_(1, kept, 1.0)"});
  const std::vector<std::string> encoder = backbone_->script_encoder(script, "backbone.");
  std::vector<std::string> encode = encoder, forward = encoder;
  encode.push_back(fmt::format("h = self.keep_top_k(h, {})", feature_units()));
  forward.push_back(fmt::format("return self.decode(self.keep_top_k(h, {}))", current_k_));
  define_autoencoder_methods(script, encode, backbone_->script_decoder(script, "backbone."), forward);
}

Losses KSparseImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor recon = reconstruction_cost(output, target);
  return {recon, {{"recon", recon}}};
}

void register_ksparse(Registry& registry) {
  registry.add({"ksparse",
                "linear encoder whose code keeps only the k largest units per example (Makhzani & Frey); "
                "k annealing, encode_alpha * k units at encode time",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  // The paper's MNIST model: 1000 linear units, tied weights, squared error.
                  const UndercompleteOptions defaults = UndercompleteOptions(BackboneOptions(data.shape, 1000).hidden({}))
                                                            .tied(true)
                                                            .code_activation(Activation::identity)
                                                            .output_activation(Activation::identity)
                                                            .loss(ReconstructionLoss::mse);
                  KSparseOptions o(
                      read_undercomplete_options(r, data, defaults, "the k-sparse code keeps its k largest values"));
                  r.require(!o.backbone().networks().conv(), "backbone",
                            "the k-sparse autoencoder is defined on a linear (MLP) encoder; conv is not supported");
                  const int64_t width = o.backbone().networks().code_size();
                  o.k(r.integer("k", o.k(), between(1, static_cast<double>(width))));
                  o.encode_alpha(r.number("encode_alpha", o.encode_alpha(), at_least(1)));
                  o.anneal_from(r.integer("anneal_from", o.anneal_from(), between(0, static_cast<double>(width))));
                  r.require(o.anneal_from() == 0 || o.anneal_from() >= o.k(), "anneal_from",
                            "must be 0 (no annealing) or at least k");
                  o.anneal_fraction(r.number("anneal_fraction", o.anneal_fraction(), Bound{0, 1, true, false}));
                  r.finish();
                  return [o] { return KSparse(o).ptr(); };
                },
                [](const DataSpec& input) {
                  // As a layer too, the code stays linear: the top-k selection is its non-linearity.
                  Json defaults = stack_layer_defaults(input);
                  defaults.erase("code_activation");
                  return defaults;
                }});
}

}  // namespace torchae
