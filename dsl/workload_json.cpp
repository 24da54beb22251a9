#include "dsl/workload_json.h"

#include <algorithm>

#include "dsl/core/json_reader.h"
#include "dsl/core/kernel_spec.h"

namespace tetra::dsl {

namespace {

constexpr int64_t kMaxDim = int64_t(1) << 31;

// The "op" field, which says which workload the JSON holds.
Status check_op(const nlohmann::json& j, const std::string& op) {
  JsonReader r(j, "workload");
  if (r.text("op") != op && r.ok()) r.fail_with("\"op\" must be \"" + op + "\", not " + j.at("op").dump());
  if (!r.ok()) return r.failure();
  return ok_status();
}

}  // namespace

nlohmann::json qmatmul_workload_to_json(const QMatMulWorkload& w) {
  return {{"op", "qmatmul"},
          {"M", w.M},
          {"K", w.K},
          {"N", w.N},
          {"weight", int4_format_to_json(w.format)},
          {"bias", w.has_bias},
          {"epilogue", epilogue_to_json(w.epilogue)},
          {"int8_activations", w.int8_activations},
          {"f16_activations", w.f16_activations}};
}

Result<QMatMulWorkload> qmatmul_workload_from_json(const nlohmann::json& j) {
  if (Status st = check_op(j, "qmatmul"); !st) return st.failure();
  JsonReader r(j, "workload");
  QMatMulWorkload w;
  w.M = r.integer("M", 1, kMaxDim);
  w.K = r.integer("K", 1, kMaxDim);
  w.N = r.integer("N", 1, kMaxDim);
  const nlohmann::json* weight = r.field("weight");
  w.has_bias = r.flag("bias");
  const nlohmann::json* epilogue = r.field("epilogue");
  w.int8_activations = r.flag("int8_activations");
  w.f16_activations = r.flag("f16_activations");
  if (!r.ok()) return r.failure();
  Result<Int4Format> format = int4_format_from_json(*weight);
  if (!format) return format.failure();
  w.format = format.value();
  Result<OutputEpilogue> read = epilogue_from_json(*epilogue);
  if (!read) return read.failure();
  w.epilogue = read.value();
  return w;
}

nlohmann::json qconv_workload_to_json(const QConvWorkload& w) {
  return {{"op", "qconv"}, {"N", w.N},   {"C", w.C},   {"H", w.H},   {"W", w.W},   {"M", w.M},
          {"group", w.group}, {"KH", w.KH}, {"KW", w.KW}, {"SH", w.SH}, {"SW", w.SW}, {"DH", w.DH},
          {"DW", w.DW}, {"pads", {w.pad_top, w.pad_left, w.pad_bottom, w.pad_right}},
          {"OH", w.OH}, {"OW", w.OW}, {"weight", conv_format_to_json(w.format)}, {"block", w.block}, {"bias", w.has_bias},
          {"epilogue", epilogue_to_json(w.epilogue)}};
}

Result<QConvWorkload> qconv_workload_from_json(const nlohmann::json& j) {
  if (Status st = check_op(j, "qconv"); !st) return st.failure();
  JsonReader r(j, "workload");
  QConvWorkload w;
  w.N = r.integer("N", 1, kMaxDim);
  w.C = r.integer("C", 1, kMaxDim);
  w.H = r.integer("H", 1, kMaxDim);
  w.W = r.integer("W", 1, kMaxDim);
  w.M = r.integer("M", 1, kMaxDim);
  w.group = r.integer("group", 1, kMaxDim);
  w.KH = r.integer("KH", 1, kMaxDim);
  w.KW = r.integer("KW", 1, kMaxDim);
  w.SH = r.integer("SH", 1, kMaxDim);
  w.SW = r.integer("SW", 1, kMaxDim);
  w.DH = r.integer("DH", 1, kMaxDim);
  w.DW = r.integer("DW", 1, kMaxDim);
  w.OH = r.integer("OH", 1, kMaxDim);
  w.OW = r.integer("OW", 1, kMaxDim);
  w.block = r.integer("block", 0, kMaxDim);
  w.has_bias = r.flag("bias");
  const nlohmann::json* pads = r.field("pads");
  if (pads && !(pads->is_array() && pads->size() == 4 && std::all_of(pads->begin(), pads->end(), [](const auto& p) {
                  return p.is_number_integer() && p.template get<int64_t>() >= 0 && p.template get<int64_t>() < kMaxDim;
                })))
    r.fail_with("\"pads\" must be 4 integers >= 0 (top, left, bottom, right), not " + pads->dump());
  const nlohmann::json* weight = r.field("weight");
  const nlohmann::json* epilogue = r.field("epilogue");
  if (!r.ok()) return r.failure();
  w.pad_top = (*pads)[0].get<int64_t>();
  w.pad_left = (*pads)[1].get<int64_t>();
  w.pad_bottom = (*pads)[2].get<int64_t>();
  w.pad_right = (*pads)[3].get<int64_t>();

  Result<ConvInt4Format> format = conv_format_from_json(*weight);
  if (!format) return format.failure();
  w.format = format.value();

  Result<OutputEpilogue> read = epilogue_from_json(*epilogue);
  if (!read) return read.failure();
  w.epilogue = read.value();

  // The shapes must agree, or the kernel and the reference would read past the buffers.
  auto bad = [](const std::string& why) { return Failure{FailureKind::BadJson, "workload", why}; };
  if (w.C % w.group != 0 || w.M % w.group != 0)
    return bad("C " + std::to_string(w.C) + " and M " + std::to_string(w.M) + " must be multiples of group " +
               std::to_string(w.group));
  auto extent = [](int64_t in, int64_t pads, int64_t k, int64_t d, int64_t s) {
    return (in + pads - d * (k - 1) - 1) / s + 1;
  };
  if (w.OH != extent(w.H, w.pad_top + w.pad_bottom, w.KH, w.DH, w.SH) ||
      w.OW != extent(w.W, w.pad_left + w.pad_right, w.KW, w.DW, w.SW))
    return bad("the output " + std::to_string(w.OH) + "x" + std::to_string(w.OW) +
               " does not follow from the input, kernel, strides, dilations and pads");
  if ((w.format.grid == ConvInt4Format::Grid::Blocked) != (w.block > 0) && !w.format.is_float())
    return bad("\"block\" must be positive for a blocked weight and 0 otherwise");
  return w;
}

}  // namespace tetra::dsl
