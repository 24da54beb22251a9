// Element types, numbered as ONNX's TensorProto.DataType so that they map one to one.
#pragma once
#include <cstdint>
#include <string>

namespace tetra {

enum class DType : int32_t {
  Undefined = 0,
  Float32 = 1,
  UInt8 = 2,
  Int8 = 3,
  UInt16 = 4,
  Int16 = 5,
  Int32 = 6,
  Int64 = 7,
  String = 8,
  Bool = 9,
  Float16 = 10,
  Float64 = 11,
  UInt32 = 12,
  UInt64 = 13,
  BFloat16 = 16,
  UInt4 = 21,
  Int4 = 22,
};

std::string dtype_name(DType t);         // "float32", "int4", ...
bool dtype_supported(DType t);           // the element types tetra computes with
DType dtype_from_onnx(int32_t onnx_type);  // Undefined for codes tetra does not know
int dtype_bits(DType t);                 // 4 for int4/uint4, 8 for bool, ...
bool is_float(DType t);
bool is_int4(DType t);
bool is_signed_int(DType t);
bool is_integer(DType t);  // includes bool
// Representable range of an integer type, as doubles (int64 approximated).
double dtype_min(DType t);
double dtype_max(DType t);
// Bytes needed for `count` elements; 4-bit types pack two per byte.
int64_t storage_bytes(DType t, int64_t count);

// IEEE half <-> float conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
uint16_t double_to_half(double d);  // rounds once, straight from double

}  // namespace tetra
