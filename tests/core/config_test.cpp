#include "test_tools.h"

#include "torchae/core/config.h"
#include "torchae/core/error.h"
#include "torchae/core/io.h"

namespace torchae {
namespace {

using test::TorchaeTest;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OptionReader, FillsDefaultsAndRecordsThem) {
  OptionReader r(Json{{"epochs", 3}}, "train");
  EXPECT_EQ(r.integer("epochs", 10, at_least(1)), 3);
  EXPECT_DOUBLE_EQ(r.number("lr", 1e-3, greater_than(0)), 1e-3);
  EXPECT_EQ(r.choice("optimizer", "adam", {"adam", "sgd"}), "adam");
  EXPECT_EQ(r.integers("hidden", {512, 128}), (std::vector<int64_t>{512, 128}));
  r.finish();
  EXPECT_EQ(r.resolved(), (Json{{"epochs", 3}, {"lr", 1e-3}, {"optimizer", "adam"}, {"hidden", {512, 128}}}));
}

TEST(OptionReader, RefusesWrongTypeNamingTheKey) {
  OptionReader r(Json{{"epochs", "three"}}, "train");
  const std::string message = error_of([&] { r.integer("epochs", 10, at_least(1)); });
  EXPECT_NE(message.find("train.epochs"), std::string::npos) << message;
  EXPECT_NE(message.find("expected an integer"), std::string::npos) << message;
  OptionReader floats(Json{{"epochs", 2.5}}, "train");
  EXPECT_NE(error_of([&] { floats.integer("epochs", 10); }).find("train.epochs"), std::string::npos);
}

TEST(OptionReader, RefusesOutOfRangeNamingTheKeyAndBound) {
  OptionReader r(Json{{"lr", -1.0}, {"hidden", {64, 0}}, {"fraction", 1.5}}, "train");
  EXPECT_EQ(error_of([&] { r.number("lr", 1e-3, greater_than(0)); }), "config: train.lr: must be > 0, got -1");
  EXPECT_NE(error_of([&] { r.integers("hidden", {}, at_least(1)); }).find("train.hidden: every entry must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { r.number("fraction", 0.1, between(0, 0.9)); }).find("in [0, 0.9]"), std::string::npos);
}

// JSON integers from 2^63 up are read as unsigned: refused, not wrapped to a negative number.
TEST(OptionReader, RefusesIntegersPastTheSixtyFourBitRange) {
  const Json big = Json::parse("{\"limit\": 9223372036854775808, \"hidden\": [4, 18446744073709551615]}");
  OptionReader r(big, "data");
  EXPECT_EQ(error_of([&] { r.integer("limit", 0, at_least(0)); }),
            "config: data.limit: must be >= 0, got 9223372036854775808, past the 64-bit range");
  EXPECT_NE(error_of([&] { r.integers("hidden", {}, at_least(1)); }).find("data.hidden: expected a list of integers"),
            std::string::npos);
  OptionReader largest(Json::parse("{\"limit\": 9223372036854775807}"), "data");
  EXPECT_EQ(largest.integer("limit", 0, at_least(0)), std::numeric_limits<int64_t>::max());
}

TEST(OptionReader, RefusesUnknownKeyListingKnownOnes) {
  OptionReader r(Json{{"epochs", 3}, {"epoch", 4}}, "train");
  r.integer("epochs", 10);
  const std::string message = error_of([&] { r.finish(); });
  EXPECT_EQ(message, "config: train.epoch: unknown key (known here: epochs)");
}

TEST(OptionReader, RefusesUnknownChoice) {
  OptionReader r(Json{{"optimizer", "adamw"}}, "train");
  EXPECT_EQ(error_of([&] { r.choice("optimizer", "adam", {"adam", "sgd"}); }),
            "config: train.optimizer: expected one of adam, sgd, got \"adamw\"");
}

TEST(OptionReader, RefusesNonObjectSection) {
  EXPECT_NE(error_of([] { OptionReader(Json::array(), "model"); }).find("config: model: expected an object"),
            std::string::npos);
}

TEST(ApplyOverride, ParsesJsonValuesAndFallsBackToStrings) {
  Json config = Json::object();
  apply_override(config, "train.epochs=3");
  apply_override(config, "model.hidden=[256,64]");
  apply_override(config, "model.tied=true");
  apply_override(config, "train.device=cuda:1");
  apply_override(config, "data.path=/tmp/a=b");
  EXPECT_EQ(config["train"]["epochs"], 3);
  EXPECT_EQ(config["model"]["hidden"], Json({256, 64}));
  EXPECT_EQ(config["model"]["tied"], true);
  EXPECT_EQ(config["train"]["device"], "cuda:1");
  EXPECT_EQ(config["data"]["path"], "/tmp/a=b");
  ASSERT_NE(find_dotted(config, "model.hidden"), nullptr);
  EXPECT_EQ(find_dotted(config, "model.nothing"), nullptr);
}

TEST(ApplyOverride, RefusesMalformedAssignments) {
  Json config = Json::object();
  // Found by fuzzing: a value that is not UTF-8 was taken as a string the configuration could
  // then not be written (nor shown in a message) with.
  EXPECT_EQ(error_of([&] { apply_override(config, "train.lr=0]\xdd]"); }), "--set train.lr: not valid UTF-8 text");
  EXPECT_EQ(error_of([&] { apply_override(config, "train.lr=4e444"); }), "--set train.lr: 4e444 is past the range of a double");
  EXPECT_EQ(error_of([&] { parse_json("{\"lr\": 4e444}", "c.json"); }),
            "c.json: invalid JSON: a number past the range of a double");
  EXPECT_NE(error_of([&] { apply_override(config, "train.epochs"); }).find("expected key=value"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_override(config, "train..epochs=3"); }).find("empty part"), std::string::npos);
  apply_override(config, "train=1");
  EXPECT_NE(error_of([&] { apply_override(config, "train.epochs=3"); }).find("not inside an object"),
            std::string::npos);
}

TEST(LoadJsonFile, ReportsParseErrorsOnOneLineWithThePlace) {
  test::TempDir dir;
  write_text_atomically(dir / "bad.json", "{\"train\": {\"epochs\": 3,}}");
  const std::string message = error_of([&] { load_json_file(dir / "bad.json"); });
  EXPECT_NE(message.find("bad.json: invalid JSON: parse error at line 1"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_NE(error_of([&] { load_json_file(dir / "missing.json"); }).find("missing.json: cannot open"),
            std::string::npos);
}

// 70,000 levels of nesting overflowed the stack while the error message was built. Values
// nested deeper than kMaxJsonDepth are refused, by --set and in files alike, and messages
// echo at most 60 characters of what was given.
TEST(Config, DeeplyNestedJsonIsRefusedAndLongInputIsNotEchoedWhole) {
  const auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  Json config = Json::object();
  try {
    apply_override(config, "model.hidden=" + nested(70000));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--set model.hidden: JSON nested deeper than 64 levels");
  }
  EXPECT_NO_THROW(apply_override(config, "model.hidden=" + nested(kMaxJsonDepth)));
  test::TempDir dir;
  write_text_atomically(dir / "deep.json", "{\"model\": " + nested(70000) + "}");
  try {
    load_json_file(dir / "deep.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deep.json: JSON nested deeper than 64 levels"), std::string::npos);
  }
  try {
    apply_override(config, std::string(100000, 'k'));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 120u);
  }
}

}  // namespace
}  // namespace torchae
