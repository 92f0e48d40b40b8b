#include "torchae/models/registry.h"

#include "torchae/core/error.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace torchae {

// The registration hook of each family module of the build's list, defined in models/<name>.cpp.
#define TORCHAE_FAMILY(name) void register_##name(Registry& registry);
#include "torchae/models/families.inc"
#undef TORCHAE_FAMILY

void Registry::add(Family family) {
  if (families_.count(family.name) != 0) {
    throw Error(fmt::format("model family \"{}\" is registered twice", family.name));
  }
  order_.push_back(family.name);
  const std::string name = family.name;
  families_.emplace(name, std::move(family));
}

const Family& Registry::find(const std::string& name) const {
  auto it = families_.find(name);
  if (it == families_.end()) {
    std::vector<std::string> known;
    for (const auto& [n, f] : families_) known.push_back(n);
    throw Error(fmt::format("unknown model family \"{}\" (known: {})", name, fmt::join(known, ", ")));
  }
  return it->second;
}

std::vector<const Family*> Registry::families() const {
  std::vector<const Family*> all;
  for (const auto& [name, family] : families_) all.push_back(&family);
  return all;
}

std::vector<std::string> Registry::stackable() const {
  std::vector<std::string> names;
  for (const std::string& name : order_) {
    if (families_.at(name).layer_defaults) names.push_back(name);
  }
  return names;
}

const Registry& Registry::builtin() {
  static const Registry registry = [] {
    Registry r;
#define TORCHAE_FAMILY(name) register_##name(r);
#include "torchae/models/families.inc"
#undef TORCHAE_FAMILY
    return r;
  }();
  return registry;
}

BuiltModel build_model(const Json& section, const DataSpec& data, const Registry& registry) {
  if (!section.is_null() && !section.is_object()) {
    throw Error(fmt::format("config: model: expected an object, got {}", section.dump()));
  }
  Json options = section.is_null() ? Json::object() : section;
  std::string family = "undercomplete";
  if (auto it = options.find("family"); it != options.end()) {
    if (!it->is_string()) throw Error(fmt::format("config: model.family: expected a string, got {}", it->dump()));
    family = it->get<std::string>();
    options.erase(it);
  }
  const Family& f = registry.find(family);
  OptionReader reader(options, "model");
  BuiltModel built{f.build(reader, data, registry)(), Json::object()};
  built.resolved["family"] = family;
  built.resolved.update(reader.resolved());
  return built;
}

}  // namespace torchae
