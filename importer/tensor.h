// A dense tensor: element type, shape and bytes. 4-bit types stay packed two to a byte,
// element 2k in the low nibble and 2k+1 in the high nibble (ONNX's order).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "importer/dtype.h"

namespace tetra {

using Shape = std::vector<int64_t>;

// Product of the dims; throws on negative dims or overflow past `limit` elements.
int64_t num_elements(const Shape& shape, int64_t limit = int64_t(1) << 40);
std::string shape_str(const Shape& shape);

// The largest tensor tetra allocates. Every tensor's size is checked against it before its storage
// exists: initializers, typed fields, inferred intermediates, file and random inputs alike.
constexpr int64_t kMaxTensorBytes = int64_t(1) << 32;  // 4 GiB
// The element count of a tensor of `dtype` and `shape`; throws (Invalid) when a dim is negative or the
// tensor would exceed kMaxTensorBytes.
int64_t checked_element_count(DType dtype, const Shape& shape);

// Row-major strides in elements.
std::vector<int64_t> strides_of(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled tensor of the given type and shape.
  Tensor(DType dtype, Shape shape);
  // Adopts already-encoded bytes; their count must match the type and shape.
  Tensor(DType dtype, Shape shape, std::vector<uint8_t> bytes);
  // A tensor whose every element the caller writes next (a compiled kernel's output): reused storage
  // is not zero-filled first, which for the large activations of a model costs as much as the kernel.
  static Tensor for_overwrite(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size() const { return size_; }
  bool empty() const { return dtype_ == DType::Undefined; }
  int64_t byte_size() const { return byte_size_; }
  const uint8_t* bytes() const { return bytes_->data() + offset_; }
  uint8_t* mutable_bytes() { return bytes_->data() + offset_; }

  // Same bytes, another shape of the same element count (shares storage).
  Tensor reshaped(Shape shape) const;
  // A tensor of `dtype` and `shape` over bytes [byte_offset, byte_offset + its size) of `storage`'s
  // bytes (shares storage; the executor's memory plan hands these out). Throws when they do not fit.
  static Tensor view(const Tensor& storage, int64_t byte_offset, DType dtype, Shape shape);
  // Whether both tensors are views of one allocation (not necessarily the same bytes of it).
  bool same_storage(const Tensor& other) const { return bytes_ == other.bytes_; }

  // Element access by flat index. get() is exact for every integer type up to 2^53 and for floats;
  // set() expects a value that the type represents (callers round and saturate first).
  double get(int64_t i) const;
  void set(int64_t i, double value);
  int64_t get_int(int64_t i) const;
  void set_int(int64_t i, int64_t value);  // integer types keep the low bits (two's complement wrap)

  std::vector<double> to_doubles() const;
  std::vector<int64_t> to_ints() const;
  static Tensor from_doubles(DType dtype, Shape shape, const std::vector<double>& values);
  static Tensor from_ints(DType dtype, Shape shape, const std::vector<int64_t>& values);
  static Tensor scalar(DType dtype, double value);

  template <class T>
  const T* data() const { return reinterpret_cast<const T*>(bytes()); }
  template <class T>
  T* mutable_data() { return reinterpret_cast<T*>(mutable_bytes()); }

 private:
  // A tensor of this type and shape, checked and sized, with no storage yet.
  static Tensor header(DType dtype, Shape shape);

  DType dtype_ = DType::Undefined;
  Shape shape_;
  int64_t size_ = 0;
  std::shared_ptr<std::vector<uint8_t>> bytes_ = std::make_shared<std::vector<uint8_t>>();
  int64_t offset_ = 0, byte_size_ = 0;  // this tensor's bytes within *bytes_ (all of them but for views)
};

// Nibble helpers, the one place that knows the packing order.
inline int unpack_nibble(const uint8_t* packed, int64_t i, bool is_signed) {
  int v = (packed[i >> 1] >> ((i & 1) * 4)) & 0xF;
  return is_signed && v >= 8 ? v - 16 : v;
}
inline void pack_nibble(uint8_t* packed, int64_t i, int value) {
  int shift = (i & 1) * 4;
  packed[i >> 1] = static_cast<uint8_t>((packed[i >> 1] & ~(0xF << shift)) | ((value & 0xF) << shift));
}

}  // namespace tetra
