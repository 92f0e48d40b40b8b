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

class Registry;

/// One autoencoder family: its name, a one-line description, and a builder that reads the
/// family's options strictly from the `model` section (family key excluded) for data of the
/// given spec, and returns the maker of the model those options describe. `registry` is the
/// one the model is built from: a family made of other families (a stack) builds its parts
/// through it.
struct Family {
  using Builder = std::function<ModelMaker(OptionReader& options, const DataSpec& data, const Registry& registry)>;

  std::string name;
  std::string description;
  Builder build;
  /// The options the family takes by default as a layer of a stack whose input is `input`
  /// (given options win); empty: the family cannot be a stack's layer.
  std::function<Json(const DataSpec& input)> layer_defaults;
};

/// Maps family names to builders. `Registry::builtin()` holds every family of torchae: the
/// build's family list (models/families.cmake) names each module, whose register_<name>
/// function it calls, explicitly (no static self-registration for a linker to drop).
class Registry {
 public:
  /// Throws Error if `family.name` is already registered.
  void add(Family family);
  /// Throws Error listing the known names when `name` is unknown.
  const Family& find(const std::string& name) const;
  std::vector<const Family*> families() const;
  /// The names of the families that can be a stack's layer (with `layer_defaults`), in the
  /// order they were registered.
  std::vector<std::string> stackable() const;

  static const Registry& builtin();

 private:
  std::map<std::string, Family> families_;
  std::vector<std::string> order_;
};

/// A model built from a config section, with that section resolved (defaults filled in).
struct BuiltModel {
  std::shared_ptr<Autoencoder> model;
  Json resolved;
  /// Settings that are allowed but probably a mistake, each naming its key (`OptionReader::warn`);
  /// shown by whoever builds the model (the command line: on stderr, before training).
  std::vector<std::string> warnings;
};

/// Builds the model described by `section` ({"family": ..., options...}); the default
/// family is "undercomplete". Unknown keys and bad values are refused with the key's name.
BuiltModel build_model(const Json& section, const DataSpec& data,
                       const Registry& registry = Registry::builtin());

}  // namespace torchae
