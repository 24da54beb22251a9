#include "runtime/kernel_source.h"

namespace tetra {

std::string PoolWindow::signature() const {
  auto pair = [](int h, int w) { return std::to_string(h) + "x" + std::to_string(w); };
  return std::string(is_max ? "max" : "average") + " pool " + pair(kh, kw) + " stride " + pair(sh, sw) +
         " dilation " + pair(dh, dw);
}

std::string KernelRequest::key() const {
  switch (kind) {
    // The workload keys name the tuning form; the code also depends on the rest of the epilogue.
    case Kind::QMatMul:
      return qmatmul.key() +
             (qmatmul.epilogue == qmatmul.for_tuning().epilogue ? "" : " epilogue " + qmatmul.epilogue.describe());
    case Kind::QConv:
      return qconv.key() + (qconv.epilogue.empty() ? "" : " epilogue " + qconv.epilogue.describe());
    case Kind::Elementwise: return "elementwise " + op + " [" + pattern + "]";
    case Kind::Softmax: return "softmax";
    case Kind::LayerNorm: return flag ? "layer norm bias" : "layer norm";
    case Kind::GlobalPool: return flag ? "global max pool" : "global average pool";
    case Kind::Pool: return window.signature();
    case Kind::BatchMatMul: return "batch matmul";
    case Kind::Attention: return "attention";
    case Kind::ConvTransposeDirect:
      return "conv transpose direct " + std::to_string(kernel_h) + "x" + std::to_string(kernel_w) +
             (epilogue.empty() ? "" : " " + epilogue.describe());
    case Kind::Copy: return "strided copy " + std::to_string(element_bits) + "-bit";
    case Kind::Where: return "where " + std::to_string(element_bits) + "-bit";
    case Kind::Gather: return "gather " + std::to_string(element_bits) + "-bit";
    case Kind::Resize: return "resize " + op;
    case Kind::Reduce: return "reduce " + op;
  }
  return "";
}

dsl::Result<std::shared_ptr<const dsl::PackedInt4Buffers>> KernelSource::prepare_qmatmul_weight(
    const QuantizedWeight& weight, bool trans_b, const KernelCode& code) {
  auto packed = dsl::pack_int4_weight(weight, trans_b, code.layout, &code.spec.weight);
  if (!packed) return packed.failure();
  return std::make_shared<const dsl::PackedInt4Buffers>(std::move(packed).value());
}

dsl::Result<std::shared_ptr<const dsl::ConvInt4Buffers>> KernelSource::prepare_conv_weight(const QuantizedWeight& weight) {
  auto packed = dsl::pack_conv_weight(weight);
  if (!packed) return packed.failure();
  return std::make_shared<const dsl::ConvInt4Buffers>(std::move(packed).value());
}

}  // namespace tetra
