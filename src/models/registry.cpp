#include "torchae/models/registry.h"

#include "torchae/core/error.h"

#include <c10/util/Exception.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <new>

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

namespace {

// The largest integer among a model's options (`key` its dotted name): the size that makes a model
// too large to allocate.
void largest_size(const Json& value, const std::string& key, std::string& at, int64_t& largest) {
  if (value.is_number_integer() && value.get<int64_t>() > largest) {
    at = key;
    largest = value.get<int64_t>();
  } else if (value.is_object()) {
    for (const auto& item : value.items()) largest_size(item.value(), key + "." + item.key(), at, largest);
  } else if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i) largest_size(value[i], fmt::format("{}[{}]", key, i), at, largest);
  }
}

// The model `make` builds. One too large to allocate is an Error naming its largest size, rather
// than LibTorch's "Storage size calculation overflowed" or "not enough memory".
std::shared_ptr<Autoencoder> construct(const ModelMaker& make, const Json& resolved) {
  const auto too_large = [&](const std::string& why) {
    std::string key;
    int64_t largest = 0;
    largest_size(resolved, "model", key, largest);
    return Error(fmt::format("config: {}: {} makes the model too large to allocate ({})", key, largest, why));
  };
  try {
    return make();
  } catch (const std::bad_alloc&) {
    throw too_large("out of memory");
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    const std::string first_line = what.substr(0, what.find('\n'));
    if (what.find("alloc") == std::string::npos && what.find("overflow") == std::string::npos) {
      throw Error("model: cannot build it: " + first_line);
    }
    // "[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: ... you tried to
    // allocate N bytes. Error code 12 (...)": the request is what the user can act on.
    const std::size_t tried = first_line.find("you tried to allocate");
    throw too_large(tried == std::string::npos ? first_line
                                               : first_line.substr(tried, first_line.find('.', tried) - tried));
  }
}

}  // namespace

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
  const ModelMaker make = f.build(reader, data, registry);
  Json resolved{{"family", family}};
  resolved.update(reader.resolved());
  return BuiltModel{construct(make, resolved), resolved, reader.warnings()};
}

}  // namespace torchae
