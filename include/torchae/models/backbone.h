#pragma once

#include "torchae/models/autoencoder.h"
#include "torchae/models/undercomplete.h"

#include <torch/nn/cloneable.h>

namespace torchae {

/// Base of the families that add one thing to an undercomplete backbone (a penalty, a
/// corruption, a top-k code): it holds the backbone as the submodule "backbone" and forwards
/// forward/encode/decode/code_size to it, so a family writes only what it adds.
///
///   class SparseImpl : public BackboneAutoencoder<SparseImpl> { ... Losses loss(...) override; };
template <typename Derived>
class BackboneAutoencoder : public torch::nn::Cloneable<Derived>, public Autoencoder, public Hashing, public MaskAware,
                            public NoiseAware {
 public:
  Output forward(const torch::Tensor& input) override { return backbone_->forward(input); }
  torch::Tensor encode(const torch::Tensor& input) override { return backbone_->encode(input); }
  torch::Tensor encode_preactivation(const torch::Tensor& input) override {
    return backbone_->encode_preactivation(input);
  }
  torch::Tensor decode(const torch::Tensor& code) override { return backbone_->decode(code); }
  Output reconstruct(const torch::Tensor& code) override { return backbone_->reconstruct(code); }
  int64_t code_size() const override { return backbone_->code_size(); }
  int64_t size_multiple() const override { return backbone_->size_multiple(); }
  bool bottlenecked() const override { return backbone_->bottlenecked(); }
  torch::Tensor reconstruction_cost(const Output& output, const torch::Tensor& target) override {
    return backbone_->reconstruction_cost(output, target);
  }
  torch::nn::Module& module() override { return *this; }
  /// In eval mode these families compute what their backbone does.
  void script(ScriptModel& script) const override {
    backbone_->define_script(script, "backbone.");
  }

  int64_t hash_bits() const override { return backbone_->hash_bits(); }
  torch::Tensor hash(const torch::Tensor& input) override { return backbone_->hash(input); }
  torch::Tensor relaxed_code(const torch::Tensor& input) override { return backbone_->relaxed_code(input); }

  bool takes_mask() const override { return backbone_->takes_mask(); }
  Output fill(const torch::Tensor& input, const torch::Tensor& missing) override {
    return backbone_->fill(input, missing);
  }

  bool takes_noise_level() const override { return backbone_->takes_noise_level(); }
  Output denoise(const torch::Tensor& input, const torch::Tensor& level) override {
    return backbone_->denoise(input, level);
  }

  const Undercomplete& backbone() const { return backbone_; }

 protected:
  /// For the derived reset(): (re)builds and registers the backbone.
  void reset_backbone(const UndercompleteOptions& options) {
    backbone_ = this->register_module("backbone", Undercomplete(options));
  }
  Undercomplete backbone_{nullptr};
};

}  // namespace torchae
