#include "torchae/export/zoo.h"

#include "torchae/core/error.h"
#include "torchae/export/export.h"
#include "torchae/train/run.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace torchae {

namespace fs = std::filesystem;

fs::path zoo_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path beside = exe.parent_path().parent_path() / TORCHAE_INSTALLED_ZOO_DIR;
    if (fs::is_directory(beside, ec)) return beside;
  }
  if (fs::is_directory(TORCHAE_SOURCE_ZOO_DIR, ec)) return TORCHAE_SOURCE_ZOO_DIR;
  return TORCHAE_INSTALLED_FULL_ZOO_DIR;
}

fs::path resolve_archive(const fs::path& archive) {
  const std::string spec = archive.string();
  if (spec.rfind("zoo:", 0) != 0) return archive;
  const std::string name = spec.substr(4);
  const fs::path shipped = zoo_dir() / "shipped";
  const fs::path file = shipped / (name + ".pt");
  std::error_code ec;
  if (!name.empty() && name.find('/') == std::string::npos && fs::is_regular_file(file, ec)) return file;
  std::vector<std::string> names;
  if (fs::is_directory(shipped, ec)) {
    for (const auto& entry : fs::directory_iterator(shipped, ec)) {
      if (entry.path().extension() == ".pt") names.push_back(entry.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  throw Error(fmt::format("{}: no shipped archive of that name in {} (shipped: {})", spec, shipped.string(),
                          names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
}

std::vector<ZooRecipe> zoo_recipes(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(fmt::format("{}: no such recipe directory", dir.string()));
  std::vector<ZooRecipe> recipes;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    Json config = load_json_file(entry.path());
    if (!config.is_object()) throw Error(fmt::format("{}: expected a JSON object", entry.path().string()));
    const Json description = config.value("description", Json());
    if (!description.is_string()) {
      throw Error(fmt::format("{}: expected a \"description\" string", entry.path().string()));
    }
    config.erase("description");
    recipes.push_back({entry.path().stem().string(), description.get<std::string>(), std::move(config)});
  }
  std::sort(recipes.begin(), recipes.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return recipes;
}

const ZooRecipe& find_recipe(const std::vector<ZooRecipe>& recipes, const std::string& name) {
  for (const auto& recipe : recipes) {
    if (recipe.name == name) return recipe;
  }
  std::vector<std::string> names;
  for (const auto& recipe : recipes) names.push_back(recipe.name);
  throw Error(fmt::format("zoo: unknown recipe \"{}\" (known: {})", name, fmt::join(names, ", ")));
}

Json zoo_build(const ZooRecipe& recipe, const fs::path& out, std::shared_ptr<Reporter> reporter) {
  const fs::path run_dir = out / recipe.name;
  std::error_code ec;
  if (fs::exists(run_dir / "config.json", ec)) {
    resume_run(run_dir, {}, nullptr, reporter);
  } else {
    train_run(recipe.config, run_dir, nullptr, reporter);
  }
  evaluate_run(run_dir);
  return export_run(run_dir, out / (recipe.name + ".pt"),
                    {{"zoo", {{"recipe", recipe.name}, {"description", recipe.description}}}});
}

}  // namespace torchae
