#pragma once

#include "torchae/core/config.h"
#include "torchae/train/trainer.h"

#include <filesystem>
#include <string>
#include <vector>

namespace torchae {

/// A recipe of the model zoo: models/zoo/NAME.json, a run configuration
/// ({"model": ..., "data": ..., "train": ...}) with a one-line "description".
struct ZooRecipe {
  std::string name;
  std::string description;
  /// The run configuration, the description taken out.
  Json config;
};

/// The recipes in `dir` (every *.json), sorted by name; an unreadable recipe is an Error
/// naming its file.
std::vector<ZooRecipe> zoo_recipes(const std::filesystem::path& dir);

/// The recipe called `name` among `recipes`, or an Error listing the known names.
const ZooRecipe& find_recipe(const std::vector<ZooRecipe>& recipes, const std::string& name);

/// Where the zoo is: share/torchae/zoo of the prefix the running program is installed in where
/// there is one; else the source tree's models/zoo where it exists (a program of the build
/// tree); else share/torchae/zoo of the prefix torchae was built for. Its shipped archives are
/// in shipped/ (see `resolve_archive`).
std::filesystem::path zoo_dir();

/// An archive given as "zoo:NAME" is the zoo's shipped archive zoo_dir()/shipped/NAME.pt (an
/// Error listing the shipped names when there is no such archive); anything else is a path,
/// returned as it is. What every loader of archives (`load_torchscript`, `read_model_card`,
/// `Restorer::load`) applies first.
std::filesystem::path resolve_archive(const std::filesystem::path& archive);

/// `torchae zoo build`: trains `recipe` into out/NAME (continuing it when a run is already
/// there, so an interrupted build resumes), evaluates it and exports out/NAME.pt. Returns the
/// archive's model card.
///
///   for (const auto& r : zoo_recipes("models/zoo")) zoo_build(r, "runs/zoo");
/// `reporter`: who is told how training goes (null: no one).
Json zoo_build(const ZooRecipe& recipe, const std::filesystem::path& out, std::shared_ptr<Reporter> reporter = nullptr);

}  // namespace torchae
