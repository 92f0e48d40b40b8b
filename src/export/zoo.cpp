#include "torchae/export/zoo.h"

#include "torchae/core/error.h"
#include "torchae/export/export.h"
#include "torchae/train/run.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace torchae {

namespace fs = std::filesystem;

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
