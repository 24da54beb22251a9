#include "importer/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace tetra {

std::string dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::UInt16: return "uint16";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::String: return "string";
    case DType::Bool: return "bool";
    case DType::Float16: return "float16";
    case DType::Float64: return "float64";
    case DType::UInt32: return "uint32";
    case DType::UInt64: return "uint64";
    case DType::BFloat16: return "bfloat16";
    case DType::UInt4: return "uint4";
    case DType::Int4: return "int4";
    default: return "undefined";
  }
}

bool dtype_supported(DType t) {
  switch (t) {
    case DType::Float32: case DType::Float16: case DType::Int8: case DType::UInt8:
    case DType::Int16: case DType::UInt16: case DType::Int32: case DType::Int64: case DType::Bool:
    case DType::Int4: case DType::UInt4:
      return true;
    default:
      return false;
  }
}

DType dtype_from_onnx(int32_t code) {
  switch (code) {
    case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8: case 9: case 10: case 11:
    case 12: case 13: case 16: case 21: case 22:
      return static_cast<DType>(code);
    default:
      return DType::Undefined;
  }
}

int dtype_bits(DType t) {
  switch (t) {
    case DType::Int4: case DType::UInt4: return 4;
    case DType::Bool: case DType::Int8: case DType::UInt8: return 8;
    case DType::Int16: case DType::UInt16: case DType::Float16: case DType::BFloat16: return 16;
    case DType::Int32: case DType::UInt32: case DType::Float32: return 32;
    case DType::Int64: case DType::UInt64: case DType::Float64: return 64;
    default: return 0;
  }
}

bool is_float(DType t) {
  return t == DType::Float32 || t == DType::Float16 || t == DType::Float64 || t == DType::BFloat16;
}
bool is_int4(DType t) { return t == DType::Int4 || t == DType::UInt4; }
bool is_signed_int(DType t) {
  return t == DType::Int4 || t == DType::Int8 || t == DType::Int16 || t == DType::Int32 || t == DType::Int64;
}
bool is_integer(DType t) { return !is_float(t) && t != DType::String && t != DType::Undefined; }

double dtype_min(DType t) {
  switch (t) {
    case DType::Int4: return -8;
    case DType::Int8: return -128;
    case DType::Int16: return -32768;
    case DType::Int32: return -2147483648.0;
    case DType::Int64: return -9223372036854775808.0;
    default: return 0;
  }
}

double dtype_max(DType t) {
  switch (t) {
    case DType::Int4: return 7;
    case DType::UInt4: return 15;
    case DType::Bool: return 1;
    case DType::Int8: return 127;
    case DType::UInt8: return 255;
    case DType::Int16: return 32767;
    case DType::UInt16: return 65535;
    case DType::Int32: return 2147483647.0;
    case DType::UInt32: return 4294967295.0;
    case DType::Int64: return 9223372036854775807.0;
    case DType::UInt64: return 18446744073709551615.0;
    default: return std::numeric_limits<double>::infinity();
  }
}

int64_t storage_bytes(DType t, int64_t count) { return (count * dtype_bits(t) + 7) / 8; }

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal half: value = mantissa * 2^-24
    float f = std::ldexp(static_cast<float>(mantissa), -24);
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t double_to_half(double d) {
  uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  double a = std::fabs(d);
  if (std::isnan(d)) return sign | 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0, -14)) {
    // Subnormal range: quantum 2^-24; nearbyint rounds half to even.
    double q = std::nearbyint(std::ldexp(a, 24));
    return sign | static_cast<uint16_t>(q);  // q == 1024 becomes the smallest normal, as it should
  }
  int e;
  double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  // 11 significant bits: scale so the mantissa is an integer in [1024, 2048).
  double q = std::nearbyint(std::ldexp(m, 11));
  if (q == 2048) {
    q = 1024;
    ++e;
  }
  int exponent = e - 1 + 15;
  if (exponent >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>((exponent << 10) | (static_cast<int>(q) - 1024));
}

uint16_t float_to_half(float f) { return double_to_half(static_cast<double>(f)); }

}  // namespace tetra
