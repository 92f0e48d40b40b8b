#include "torchae/core/config.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace torchae {

bool Bound::contains(double value) const {
  if (std::isnan(value)) return false;
  const bool above = lo_open ? value > lo : value >= lo;
  const bool below = hi_open ? value < hi : value <= hi;
  return above && below;
}

std::string Bound::describe() const {
  const bool has_lo = std::isfinite(lo);
  const bool has_hi = std::isfinite(hi);
  if (has_lo && has_hi) {
    return fmt::format("in {}{}, {}{}", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
  }
  if (has_lo) return fmt::format("{} {}", lo_open ? ">" : ">=", lo);
  if (has_hi) return fmt::format("{} {}", hi_open ? "<" : "<=", hi);
  return "finite";
}

Bound at_least(double lo) { return Bound{lo}; }
Bound greater_than(double lo) { return Bound{lo, Bound{}.hi, true, false}; }
Bound between(double lo, double hi) { return Bound{lo, hi}; }
Bound strictly_between(double lo, double hi) { return Bound{lo, hi, true, true}; }

namespace {

// At most 60 characters of `text`, for messages: an input is named, not echoed whole.
std::string clipped(const std::string& text) { return text.size() > 60 ? text.substr(0, 57) + "..." : text; }

std::string shown(const Json& value) { return clipped(json_text(value)); }

// Whether an integer JSON value is an int64_t: nlohmann reads 2^63 to 2^64 - 1 as unsigned, which
// get<int64_t> would wrap to a negative number.
bool fits_int64(const Json& j) {
  return !j.is_number_unsigned() || j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

}  // namespace

OptionReader::OptionReader(const Json& section, std::string prefix)
    : section_(section.is_null() ? Json::object() : section), prefix_(std::move(prefix)) {
  if (!section_.is_object()) {
    throw Error(fmt::format("config: {}: expected an object, got {}", prefix_, shown(section_)));
  }
}

std::string OptionReader::name(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

bool OptionReader::given(const std::string& key) const { return section_.contains(key); }

void OptionReader::require(bool ok, const std::string& key, const std::string& message) const {
  if (!ok) throw Error(fmt::format("config: {}: {}", name(key), message));
}

const Json* OptionReader::lookup(const std::string& key) {
  read_.insert(key);
  auto it = section_.find(key);
  return it == section_.end() ? nullptr : &*it;
}

const Json* OptionReader::raw(const std::string& key) { return lookup(key); }

int64_t OptionReader::integer(const std::string& key, int64_t fallback, Bound bound) {
  int64_t value = fallback;
  if (const Json* j = lookup(key)) {
    require(j->is_number_integer(), key,
            fmt::format("expected an integer {}, got {}", bound.describe(), shown(*j)));
    require(fits_int64(*j), key, fmt::format("must be {}, got {}, past the 64-bit range", bound.describe(), shown(*j)));
    value = j->get<int64_t>();
  }
  require(bound.contains(static_cast<double>(value)), key,
          fmt::format("must be {}, got {}", bound.describe(), value));
  resolved_[key] = value;
  return value;
}

double OptionReader::number(const std::string& key, double fallback, Bound bound) {
  double value = fallback;
  if (const Json* j = lookup(key)) {
    require(j->is_number(), key,
            fmt::format("expected a number {}, got {}", bound.describe(), shown(*j)));
    value = j->get<double>();
  }
  require(bound.contains(value), key, fmt::format("must be {}, got {}", bound.describe(), value));
  resolved_[key] = value;
  return value;
}

bool OptionReader::boolean(const std::string& key, bool fallback) {
  bool value = fallback;
  if (const Json* j = lookup(key)) {
    require(j->is_boolean(), key, fmt::format("expected true or false, got {}", shown(*j)));
    value = j->get<bool>();
  }
  resolved_[key] = value;
  return value;
}

std::string OptionReader::string(const std::string& key, const std::string& fallback) {
  std::string value = fallback;
  if (const Json* j = lookup(key)) {
    require(j->is_string(), key, fmt::format("expected a string, got {}", shown(*j)));
    value = j->get<std::string>();
  }
  resolved_[key] = value;
  return value;
}

std::string OptionReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& allowed) {
  std::string value = fallback;
  if (const Json* j = lookup(key)) {
    require(j->is_string(), key,
            fmt::format("expected one of {}, got {}", fmt::join(allowed, ", "), shown(*j)));
    value = j->get<std::string>();
  }
  bool known = false;
  for (const auto& a : allowed) known = known || a == value;
  require(known, key, fmt::format("expected one of {}, got \"{}\"", fmt::join(allowed, ", "), value));
  resolved_[key] = value;
  return value;
}

std::vector<int64_t> OptionReader::integers(const std::string& key, const std::vector<int64_t>& fallback,
                                            Bound bound) {
  std::vector<int64_t> values = fallback;
  if (const Json* j = lookup(key)) {
    const std::string expected = fmt::format("expected a list of integers {}", bound.describe());
    require(j->is_array(), key, fmt::format("{}, got {}", expected, shown(*j)));
    values.clear();
    for (const Json& item : *j) {
      require(item.is_number_integer() && fits_int64(item), key, fmt::format("{}, got {}", expected, shown(*j)));
      values.push_back(item.get<int64_t>());
    }
  }
  for (int64_t v : values) {
    require(bound.contains(static_cast<double>(v)), key,
            fmt::format("every entry must be {}, got {}", bound.describe(), v));
  }
  resolved_[key] = values;
  return values;
}

void OptionReader::finish() const {
  for (const auto& item : section_.items()) {
    if (read_.count(item.key()) == 0) {
      std::vector<std::string> known(read_.begin(), read_.end());
      throw Error(fmt::format("config: {}: unknown key (known here: {})", name(item.key()),
                              fmt::join(known, ", ")));
    }
  }
}

std::size_t index_of_name(const std::vector<std::string>& names, const std::string& name, const std::string& what) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return i;
  }
  throw Error(fmt::format("unknown {} \"{}\" (known: {})", what, name, fmt::join(names, ", ")));
}

namespace {

struct TooDeep {};

// Parses `text`, refusing (TooDeep) values nested deeper than kMaxJsonDepth: nlohmann's
// parser is iterative, but dumping a value (as error messages do) recurses once per level,
// and 70,000 levels overflowed the stack.
Json parse_bounded(const std::string& text) {
  return Json::parse(text, [](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    return true;
  });
}

}  // namespace

Json parse_json(const std::string& text, const std::string& what) {
  try {
    return parse_bounded(text);
  } catch (const TooDeep&) {
    throw Error(fmt::format("{}: JSON nested deeper than {} levels", what, kMaxJsonDepth));
  } catch (const Json::parse_error& e) {
    // nlohmann's message is "[json.exception.parse_error.101] parse error at line L, column C: ..."
    std::string message = e.what();
    const auto at = message.find("parse error");
    throw Error(fmt::format("{}: invalid JSON: {}", what, at == std::string::npos ? message : message.substr(at)));
  } catch (const Json::out_of_range&) {
    // Found by fuzzing: a number past the range of a double (1e400) is out_of_range, not parse_error.
    throw Error(fmt::format("{}: invalid JSON: a number past the range of a double", what));
  }
}

Json load_json_file(const std::filesystem::path& path) { return parse_json(read_text(path), path.string()); }

const Json* find_dotted(const Json& config, const std::string& dotted_key) {
  const Json* node = &config;
  std::size_t start = 0;
  while (true) {
    const auto dot = dotted_key.find('.', start);
    const std::string part = dotted_key.substr(start, dot - start);
    if (!node->is_object()) return nullptr;
    auto it = node->find(part);
    if (it == node->end()) return nullptr;
    node = &*it;
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

std::vector<LeafDifference> leaf_differences(const Json& first, const Json& second) {
  const Json a = first.flatten(), b = second.flatten();  // {"/model/code_size": 32, ...}
  Json keys = a;
  keys.update(b);
  std::vector<LeafDifference> out;
  for (const auto& item : keys.items()) {
    const auto in_a = a.find(item.key()), in_b = b.find(item.key());
    if (in_a != a.end() && in_b != b.end() && *in_a == *in_b) continue;
    std::string key = item.key().substr(1);
    std::replace(key.begin(), key.end(), '/', '.');
    out.push_back({std::move(key), in_a == a.end() ? std::nullopt : std::optional<Json>(*in_a),
                   in_b == b.end() ? std::nullopt : std::optional<Json>(*in_b)});
  }
  return out;
}

void apply_override(Json& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error(fmt::format("--set {}: expected key=value, e.g. train.epochs=3", clipped(assignment)));
  }
  // JSON text is UTF-8: a value that is not would make the configuration unwritable.
  try {
    (void)Json(assignment).dump();
  } catch (const Json::type_error&) {
    throw Error(fmt::format("--set {}: not valid UTF-8 text", clipped(assignment.substr(0, eq))));
  }
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  Json value;
  try {
    value = parse_bounded(text);
  } catch (const TooDeep&) {
    throw Error(fmt::format("--set {}: JSON nested deeper than {} levels", clipped(key), kMaxJsonDepth));
  } catch (const Json::parse_error&) {
    value = text;  // not JSON: a string
  } catch (const Json::out_of_range&) {
    throw Error(fmt::format("--set {}: {} is past the range of a double", clipped(key), clipped(text)));
  }

  Json* node = &config;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot - start);
    if (part.empty()) throw Error(fmt::format("--set {}: empty part in key \"{}\"", clipped(assignment), clipped(key)));
    if (!node->is_object()) {
      throw Error(fmt::format("--set {}: \"{}\" is not inside an object", clipped(assignment), clipped(key)));
    }
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    node = &(*node)[part];
    if (node->is_null()) *node = Json::object();
    start = dot + 1;
  }
}

}  // namespace torchae
