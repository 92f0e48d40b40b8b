#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace torchae {

using Json = nlohmann::json;

/// An allowed interval for a numeric option, e.g. `at_least(1)` or `between(0, 1)`.
struct Bound {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;
  bool hi_open = false;

  bool contains(double value) const;
  /// Human wording, e.g. ">= 1" or "in (0, 1]".
  std::string describe() const;
};

Bound at_least(double lo);
Bound greater_than(double lo);
Bound between(double lo, double hi);
/// (lo, hi): both ends excluded.
Bound strictly_between(double lo, double hi);

/// Reads one JSON object (a config section) strictly: every read names its key and its
/// default, checks the type and range, and records the value in `resolved()`. `finish()`
/// refuses any key that was never read, so a typo is an error instead of a silent default.
///
///   OptionReader r(config["train"], "train");
///   int64_t epochs = r.integer("epochs", 10, at_least(1));
///   std::string opt = r.choice("optimizer", "adam", {"adam", "sgd"});
///   r.finish();
class OptionReader {
 public:
  /// `prefix` is the dotted path of the section, used in messages ("model", "train").
  OptionReader(const Json& section, std::string prefix);

  int64_t integer(const std::string& key, int64_t fallback, Bound bound = {});
  double number(const std::string& key, double fallback, Bound bound = {});
  bool boolean(const std::string& key, bool fallback);
  std::string string(const std::string& key, const std::string& fallback);
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& allowed);
  std::vector<int64_t> integers(const std::string& key, const std::vector<int64_t>& fallback,
                                Bound bound = {});

  /// The JSON given for `key`, or nullptr: for options whose structure the caller checks
  /// itself (a list of objects). Record what it resolves to with `resolve`.
  const Json* raw(const std::string& key);
  /// Records `value` as the resolved value of `key`.
  void resolve(const std::string& key, Json value) { resolved_[key] = std::move(value); }

  /// Whether the user gave `key` (defaults not counted).
  bool given(const std::string& key) const;
  /// The full dotted name of `key`, for messages: "model.hidden".
  std::string name(const std::string& key) const;
  /// Throws Error naming `key` unless `ok`; for checks that involve several options.
  void require(bool ok, const std::string& key, const std::string& message) const;
  /// Refuses keys that were never read, listing the known ones.
  void finish() const;
  /// Every option read so far, with its value or its default.
  const Json& resolved() const { return resolved_; }

  /// Records a warning about `key` (a value that is allowed but probably a mistake), for the
  /// caller to show: the reader prints nothing. `warnings()` holds them, each naming its key.
  void warn(const std::string& key, const std::string& message) { warnings_.push_back(name(key) + ": " + message); }
  /// Adds warnings another reader gathered (a part's options read by their own reader).
  void add_warnings(const std::vector<std::string>& warnings) {
    warnings_.insert(warnings_.end(), warnings.begin(), warnings.end());
  }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  const Json* lookup(const std::string& key);

  Json section_;
  std::string prefix_;
  Json resolved_ = Json::object();
  std::vector<std::string> warnings_;
  std::set<std::string> read_;
};

/// The position of `name` in `names`; throws Error "unknown <what> "name" (known: ...)" when
/// absent. Turns an option's string into an enum whose values follow `names`.
std::size_t index_of_name(const std::vector<std::string>& names, const std::string& name, const std::string& what);

/// How deep a JSON value torchae reads may nest (its configurations nest 4 levels deep).
inline constexpr int kMaxJsonDepth = 64;

/// Parses JSON text; invalid JSON, or JSON nested deeper than kMaxJsonDepth, is an Error
/// naming `what` (and the line and column, if known).
Json parse_json(const std::string& text, const std::string& what);

/// `value` as JSON text (`indent` as Json::dump's), as torchae writes its files: bytes that are not
/// UTF-8, which only a string can hold (a path), become U+FFFD instead of an exception.
inline std::string json_text(const Json& value, int indent = -1) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

/// Parses a JSON file; any failure is one line naming the file (and line/column if known).
Json load_json_file(const std::filesystem::path& path);

/// Applies one `--set key=value` override: dotted key, value parsed as JSON when it is valid
/// JSON (`3`, `true`, `[256,64]`, `"x"`) and taken as a string otherwise (`cuda:0`); text that
/// is not UTF-8 is refused.
void apply_override(Json& config, const std::string& assignment);

/// Reads the value at a dotted key, or nullptr when absent.
const Json* find_dotted(const Json& config, const std::string& dotted_key);

/// A leaf (a value that is not an object) at which two configurations differ.
struct LeafDifference {
  std::string key;            ///< dotted: "model.code_size"
  std::optional<Json> first;  ///< its value in the first; none: absent there
  std::optional<Json> second;

  /// A side's value as JSON text, or "absent".
  static std::string text(const std::optional<Json>& value) { return value ? value->dump() : "absent"; }
};

/// The leaves at which `first` and `second` differ, in the order of their dotted keys.
std::vector<LeafDifference> leaf_differences(const Json& first, const Json& second);

}  // namespace torchae
