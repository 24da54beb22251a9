// Launch plans: the host side of a GPU kernel as data (dsl/core/launch_plan.h). Their JSON round-trips,
// their expressions evaluate as Halide's integer arithmetic does, and malformed plans are failures
// naming what is wrong.
#include <catch2/catch.hpp>

#include "dsl/core/launch_plan.h"

using namespace tetra::dsl;

TEST_CASE("a launch plan round-trips through JSON and evaluates its grid from the launch's inputs", "[gpu]") {
  nlohmann::json j = nlohmann::json::parse(R"({
    "kernel": "gemv_k0", "shared_bytes": 1024,
    "params": [{"name": "K", "kind": "scalar", "type": "i32", "value": ["*", ["/", "A.extent.0", 32], 2]},
               {"name": "tail", "kind": "scalar", "type": "i32", "value": ["!=", ["%", "A.extent.0", 4], 0]},
               {"name": "A", "kind": "buffer", "type": "f32", "read": true, "write": false},
               {"name": "Y", "kind": "buffer", "type": "f32", "read": false, "write": true}],
    "blocks": [["/", ["+", "Y.extent.0", 63], 64], "Y.extent.1", 1],
    "threads": [64, ["select", ["<", "Y.extent.0", 32], 1, 4], 1]})");
  Result<LaunchPlan> plan = LaunchPlan::from_json(j);
  REQUIRE(plan.ok());
  CHECK(LaunchPlan::from_json(plan.value().to_json()).value().to_json() == plan.value().to_json());
  CHECK(plan.value().to_json() == j);

  std::map<std::string, int64_t> inputs = {{"A.extent.0", 100}, {"Y.extent.0", 200}, {"Y.extent.1", 3}};
  CHECK(evaluate(plan.value().blocks[0], inputs).value() == 4);  // ceil(200 / 64)
  CHECK(evaluate(plan.value().blocks[1], inputs).value() == 3);
  CHECK(evaluate(plan.value().threads[1], inputs).value() == 4);
  CHECK(evaluate(plan.value().params[0].value, inputs).value() == 6);
  CHECK(evaluate(plan.value().params[1].value, inputs).value() == 0);
  CHECK(plan.value().params[2].bytes() == 4);

  // Halide's division is Euclidean: the remainder is never negative.
  auto eval = [](const char* text) {
    return evaluate(LaunchPlan::from_json(
                        nlohmann::json::parse(std::string(R"({"kernel": "k", "shared_bytes": 0, "params": [],
                                                "threads": [1, 1, 1], "blocks": [)") +
                                              text + ", 1, 1]}"))
                        .value()
                        .blocks[0],
                    {})
        .value();
  };
  CHECK(eval(R"(["/", -7, 2])") == -4);
  CHECK(eval(R"(["%", -7, 2])") == 1);
  CHECK(eval(R"(["/", 7, -2])") == -3);
  CHECK(eval(R"(["%", 7, -2])") == 1);
  CHECK(eval(R"(["min", 3, ["max", 1, 2]])") == 2);
  CHECK(eval(R"(["&&", 1, ["!", 0]])") == 1);

  CHECK_FALSE(evaluate(plan.value().blocks[0], {}).ok());  // an input the launch lacks
  CHECK_THAT(evaluate(plan.value().blocks[0], {}).failure().message, Catch::Contains("Y.extent.0"));
}

TEST_CASE("malformed launch plans are failures naming the fault", "[gpu]") {
  auto message = [](const std::string& text) {
    Result<LaunchPlan> plan = LaunchPlan::from_json(nlohmann::json::parse(text));
    return plan.ok() ? std::string("accepted") : plan.failure().describe();
  };
  const std::string head = R"({"kernel": "k", "shared_bytes": 0, "params": [], "threads": [1, 1, 1], )";
  CHECK_THAT(message(head + R"("blocks": [1, 1]})"), Catch::Contains("3 extents"));
  CHECK_THAT(message(head + R"("blocks": [["^", 1, 2], 1, 1]})"), Catch::Contains("unknown operator"));
  CHECK_THAT(message(head + R"("blocks": [["+", 1], 1, 1]})"), Catch::Contains("takes 2 operands"));
  CHECK_THAT(message(head + R"("blocks": [1.5, 1, 1]})"), Catch::Contains("a number, an input or"));
  CHECK_THAT(message(R"({"kernel": "k", "shared_bytes": 0, "params": [{"name": "x", "kind": "scalar", "type": "f64",
                         "value": 1}], "threads": [1, 1, 1], "blocks": [1, 1, 1]})"),
             Catch::Contains("\"type\" must be one of"));
  CHECK_THAT(message(R"({"kernel": "k", "params": [], "threads": [1, 1, 1], "blocks": [1, 1, 1]})"),
             Catch::Contains("\"shared_bytes\" is missing"));
  std::string deep = "1";
  for (int i = 0; i < 100; ++i) deep = "[\"+\", 1, " + deep + "]";
  CHECK_THAT(message(head + "\"blocks\": [" + deep + ", 1, 1]}"), Catch::Contains("nested too deep"));
  // A division by zero at launch is a failure, not a crash.
  Result<LaunchPlan> zero = LaunchPlan::from_json(nlohmann::json::parse(head + R"("blocks": [["/", 1, "n"], 1, 1]})"));
  REQUIRE(zero.ok());
  CHECK_THAT(evaluate(zero.value().blocks[0], {{"n", 0}}).failure().message, Catch::Contains("divides by zero"));
}

TEST_CASE("a launch plan's touched ranges must lie within the buffers a job binds, checked by name", "[gpu]") {
  // W's panels in whole tiles of 32 (ceil(Y.extent.0 / 64) * 32), as Halide's bounds gave them for a GEMM
  // of 2 columns a panel: 130 columns touch 96 panels, past a weight of 65.
  nlohmann::json j = nlohmann::json::parse(R"({
    "kernel": "gemm_k0", "shared_bytes": 0, "params": [],
    "blocks": [1, 1, 1], "threads": [1, 1, 1],
    "touched": [{"buffer": "W", "dim": 2, "min": 0, "max": ["-", ["*", ["/", ["+", "Y.extent.0", 63], 64], 32], 1]},
                {"buffer": "Y", "dim": 0, "min": 0, "max": ["-", "Y.extent.0", 1]}]})");
  Result<LaunchPlan> plan = LaunchPlan::from_json(j);
  REQUIRE(plan.ok());
  CHECK(plan.value().to_json() == j);
  std::map<std::string, int64_t> inputs = {{"Y.min.0", 0}, {"Y.extent.0", 130}, {"W.min.2", 0}, {"W.extent.2", 96}};
  CHECK(check_touched(plan.value(), inputs).ok());
  inputs["W.extent.2"] = 65;
  Status past = check_touched(plan.value(), inputs);
  REQUIRE_FALSE(past.ok());
  CHECK(past.failure().subject == "gemm_k0");
  // A model job's plan names its node, and so do its failures.
  j["node"] = "MatMul 'fc1'";
  plan = LaunchPlan::from_json(j);
  REQUIRE(plan.ok());
  CHECK(plan.value().to_json() == j);
  CHECK(check_touched(plan.value(), inputs).failure().subject == "gemm_k0 (MatMul 'fc1')");
  j.erase("node");
  CHECK(past.failure().message == "touches W beyond the buffer: dimension 2 over [0, 95], and it holds [0, 64]");
  inputs["W.extent.2"] = 96, inputs["W.min.2"] = 1;  // starting past what is touched is as wrong
  CHECK_THAT(check_touched(plan.value(), inputs).failure().describe(), Catch::Contains("it holds [1, 96]"));
  // A range touching nothing (an empty output) is no fault; a buffer the job lacks is, by name.
  inputs["W.min.2"] = 0, inputs["Y.extent.0"] = 0;
  CHECK(check_touched(plan.value(), inputs).ok());
  inputs.erase("W.extent.2");
  inputs["Y.extent.0"] = 130;
  CHECK_THAT(check_touched(plan.value(), inputs).failure().describe(), Catch::Contains("W.extent.2"));
  // Plans from before the field touch nothing that is checked; a malformed range is named.
  j.erase("touched");
  CHECK(LaunchPlan::from_json(j).value().touched.empty());
  j["touched"] = {{{"buffer", "W"}, {"dim", 2}, {"min", 0}}};
  CHECK_THAT(LaunchPlan::from_json(j).failure().describe(), Catch::Contains("\"max\""));
}
