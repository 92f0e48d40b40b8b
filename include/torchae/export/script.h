#pragma once

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace torchae {

/// A model described in TorchScript source, from which `to_torchscript` compiles the exported
/// module. Each family writes its eval-mode `encode`, `decode` and `forward` here (see
/// `Autoencoder::script`); the tensors the source refers to are registered alongside.
///
///   ScriptModel s;
///   const std::string w = s.tensor("encoder.weight", weight);     // "self.encoder_weight"
///   s.method("encode(self, x: Tensor) -> Tensor", {"return torch.linear(x.flatten(1), " + w + ")"});
class ScriptModel {
 public:
  /// Registers a detached copy of `tensor` under `name` (dots become underscores) and returns
  /// the expression that refers to it, "self.<name>". Registering the same tensor under the
  /// same name again returns the same expression; another tensor under a taken name throws.
  std::string tensor(const std::string& name, const torch::Tensor& tensor);
  /// Defines a method. `signature` is "name(self, ...) -> Type"; `body` holds its statements,
  /// unindented. Defining a name twice throws.
  void method(const std::string& signature, const std::vector<std::string>& body);
  /// Whether a method of that name has been defined (in the current scope).
  bool has_method(const std::string& name) const;
  /// Puts `body` (statements, unindented) first in the method `name` of the top scope, which
  /// must be defined: a check of the arguments every caller meets.
  void prepend(const std::string& name, const std::vector<std::string>& body);
  /// Prefixes the tensors and methods defined from now on with `prefix` (e.g. "layer1_"), and
  /// makes calls between the methods of the scope ("self.encode(") call the prefixed ones, so
  /// that a part's `script()` defines layer1_encode, layer1_decode... next to its owner's
  /// methods. "" returns to the top.
  void set_scope(std::string prefix);

  /// The TorchScript source of every method defined.
  const std::string& source() const { return source_; }
  /// The registered tensors, in order of registration.
  const std::vector<std::pair<std::string, torch::Tensor>>& tensors() const { return tensors_; }
  /// The tensors as they were given, in the same order: the model's own (sharing its storage)
  /// where the model registered a parameter or buffer, which `init_from_trained` writes back to.
  const std::vector<torch::Tensor>& sources() const { return sources_; }

 private:
  std::string source_;
  std::vector<std::pair<std::string, torch::Tensor>> tensors_;
  std::vector<torch::Tensor> sources_;
  std::vector<std::string> methods_;
  std::string scope_;
  std::vector<std::string> scope_methods_;
};

/// Defines the three methods every exported autoencoder has from statement lists:
/// `encode(self, x) -> Tensor` runs `encoder` (from `x`, leaving the code in `h`),
/// `decode(self, h) -> Tensor` runs `decoder` (from `h`, leaving the output in `y`), and
/// `forward(self, x)` runs `forward`, by default `return self.decode(self.encode(x))` (a family
/// whose forward keeps a different code than encode gives its own).
void define_autoencoder_methods(ScriptModel& script, const std::vector<std::string>& encoder,
                                const std::vector<std::string>& decoder,
                                const std::vector<std::string>& forward = {"return self.decode(self.encode(x))"});

}  // namespace torchae
