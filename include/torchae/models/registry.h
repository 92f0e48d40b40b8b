#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// One autoencoder family: its name, a one-line description, and a builder that reads the
/// family's options strictly from the `model` section (family key excluded) and builds it for
/// data of the given spec.
struct Family {
  using Builder = std::function<std::shared_ptr<Autoencoder>(OptionReader& options, const DataSpec& data)>;

  std::string name;
  std::string description;
  Builder build;
};

/// Maps family names to builders. `Registry::builtin()` holds every family of torchae,
/// registered explicitly (no static self-registration for a linker to drop).
class Registry {
 public:
  /// Throws Error if `family.name` is already registered.
  void add(Family family);
  /// Throws Error listing the known names when `name` is unknown.
  const Family& find(const std::string& name) const;
  std::vector<const Family*> families() const;

  static const Registry& builtin();

 private:
  std::map<std::string, Family> families_;
};

/// A model built from a config section, with that section resolved (defaults filled in).
struct BuiltModel {
  std::shared_ptr<Autoencoder> model;
  Json resolved;
};

/// Builds the model described by `section` ({"family": ..., options...}); the default
/// family is "undercomplete". Unknown keys and bad values are refused with the key's name.
BuiltModel build_model(const Json& section, const DataSpec& data,
                       const Registry& registry = Registry::builtin());

}  // namespace torchae
