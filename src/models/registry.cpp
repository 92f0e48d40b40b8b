#include "torchae/models/registry.h"

#include "models/families.h"
#include "torchae/core/error.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace torchae {

void Registry::add(Family family) {
  if (families_.count(family.name) != 0) {
    throw Error(fmt::format("model family \"{}\" is registered twice", family.name));
  }
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

const Registry& Registry::builtin() {
  static const Registry registry = [] {
    Registry r;
    register_undercomplete(r);
    register_sparse(r);
    register_ksparse(r);
    register_denoising(r);
    register_contractive(r);
    register_vae(r);
    register_wae(r);
    register_stacked(r);
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
  BuiltModel built{f.build(reader, data), Json::object()};
  built.resolved["family"] = family;
  built.resolved.update(reader.resolved());
  return built;
}

}  // namespace torchae
