#include "torchae/models/sparse.h"

#include "torchae/models/registry.h"
#include "torchae/nn/penalties.h"

namespace torchae {

SparseOptions::SparseOptions(UndercompleteOptions backbone) : backbone_(std::move(backbone)) {}

SparseImpl::SparseImpl(SparseOptions options_) : options(std::move(options_)) { reset(); }

void SparseImpl::reset() {
  TORCH_CHECK(options.penalty() != SparsityPenalty::kl || options.backbone().code_activation() == Activation::sigmoid,
              "sparse: the KL penalty needs a code in [0, 1] (code_activation sigmoid)");
  TORCH_CHECK(options.rho() > 0 && options.rho() < 1, "sparse: rho must be in (0, 1)");
  reset_backbone(options.backbone());
}

void SparseImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::Sparse(penalty=" << (options.penalty() == SparsityPenalty::l1 ? "l1" : "kl")
         << ", lambda=" << options.lambda() << ", beta=" << options.beta() << ", rho=" << options.rho() << ")";
}

Losses SparseImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor recon = reconstruction_cost(output, target);
  const torch::Tensor sparsity = options.penalty() == SparsityPenalty::l1
                                     ? options.lambda() * l1_penalty(output.code)
                                     : options.beta() * kl_sparsity_penalty(output.code, options.rho());
  return {recon + sparsity, {{"recon", recon}, {"sparsity", sparsity}}};
}

void register_sparse(Registry& registry) {
  registry.add({"sparse",
                "undercomplete backbone + a sparsity penalty on the code: l1 (lambda sum |h|) or kl "
                "(beta sum KL(rho || mean activation), sigmoid code)",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  const std::string penalty = r.choice("penalty", "l1", {"l1", "kl"});
                  // The KL form needs a [0, 1] code: its default code activation is sigmoid.
                  UndercompleteOptions defaults(data.shape, 64);
                  if (penalty == "kl") defaults.code_activation(Activation::sigmoid);
                  SparseOptions o(read_undercomplete_options(r, data, defaults));
                  o.penalty(penalty == "l1" ? SparsityPenalty::l1 : SparsityPenalty::kl);
                  o.lambda(r.number("lambda", o.lambda(), at_least(0)));
                  o.beta(r.number("beta", o.beta(), at_least(0)));
                  o.rho(r.number("rho", o.rho(), strictly_between(0, 1)));
                  r.require(o.penalty() != SparsityPenalty::kl || o.backbone().code_activation() == Activation::sigmoid,
                            "code_activation", "the KL penalty needs a code in [0, 1]: use sigmoid");
                  r.finish();
                  return [o] { return Sparse(o).ptr(); };
                },
                stack_layer_defaults});
}

}  // namespace torchae
