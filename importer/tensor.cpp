#include "importer/tensor.h"

#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include "importer/error.h"

namespace tetra {

int64_t num_elements(const Shape& shape, int64_t limit) {
  int64_t n = 1;
  for (int64_t d : shape) {  // messages are built only on failure: this runs for every tensor
    if (d < 0) fail(ErrorKind::Invalid, "negative dimension in shape " + shape_str(shape));
    if (d == 0) return 0;
    if (n > limit / d) fail(ErrorKind::Invalid, "shape " + shape_str(shape) + " is absurdly large");
    n *= d;
  }
  return n;
}

int64_t checked_element_count(DType dtype, const Shape& shape) {
  // Bits per element are at most 64, so this element limit keeps the byte count from overflowing.
  int64_t count = num_elements(shape, int64_t(1) << 56);
  if (storage_bytes(dtype, count) > kMaxTensorBytes)
    fail(ErrorKind::Invalid, "a tensor of " + dtype_name(dtype) + shape_str(shape) + " would take " +
                                 std::to_string(storage_bytes(dtype, count)) + " bytes, more than the " +
                                 std::to_string(kMaxTensorBytes) + " tetra allows");
  return count;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? "," : "") << shape[i];
  s << "]";
  return s.str();
}

std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

namespace {

// The storage of large tensors is recycled. A model allocates the same sizes on every run, and fresh
// memory costs page faults each time the allocator gives it back to the system (a 2.5x slower CNN in a
// small process) — more than the kernels that fill it. Freed buffers wait here by size, up to a cap.
class StoragePool {
 public:
  static constexpr size_t kMinBytes = size_t(64) << 10;
  static constexpr size_t kMaxHeldBytes = size_t(256) << 20;

  // Storage of `n` bytes, zero-filled unless the caller overwrites it all.
  std::shared_ptr<std::vector<uint8_t>> take(size_t n, bool zero_fill) {
    std::vector<uint8_t>* v = nullptr;
    if (n >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(n);
      if (it != free_.end()) {
        v = it->second;
        held_ -= n;
        free_.erase(it);
      }
    }
    if (!v) v = new std::vector<uint8_t>(n, 0);
    else if (zero_fill) std::memset(v->data(), 0, n);
    return adopt(v);
  }

  std::shared_ptr<std::vector<uint8_t>> adopt(std::vector<uint8_t>* v) {
    return std::shared_ptr<std::vector<uint8_t>>(v, [this](std::vector<uint8_t>* p) { give(p); });
  }

 private:
  void give(std::vector<uint8_t>* v) {
    size_t n = v->size();
    if (n >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (held_ + n <= kMaxHeldBytes) {
        held_ += n;
        free_.emplace(n, v);
        return;
      }
    }
    delete v;
  }

  std::mutex mutex_;
  std::multimap<size_t, std::vector<uint8_t>*> free_;
  size_t held_ = 0;
};

// Never destroyed: tensors released during static destruction still return their storage.
StoragePool& storage_pool() {
  static StoragePool* pool = new StoragePool;
  return *pool;
}

}  // namespace

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  check(dtype_supported(dtype), ErrorKind::Unsupported, "element type " + dtype_name(dtype) + " is not supported");
  size_ = checked_element_count(dtype, shape_);
  byte_size_ = storage_bytes(dtype, size_);
  bytes_ = storage_pool().take(size_t(byte_size_), true);
}

Tensor Tensor::header(DType dtype, Shape shape) {
  check(dtype_supported(dtype), ErrorKind::Unsupported, "element type " + dtype_name(dtype) + " is not supported");
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.size_ = checked_element_count(dtype, t.shape_);
  t.byte_size_ = storage_bytes(dtype, t.size_);
  return t;
}

Tensor Tensor::for_overwrite(DType dtype, Shape shape) {
  Tensor t = header(dtype, std::move(shape));
  t.bytes_ = storage_pool().take(size_t(t.byte_size_), false);
  return t;
}

Tensor::Tensor(DType dtype, Shape shape, std::vector<uint8_t> bytes) : dtype_(dtype), shape_(std::move(shape)) {
  check(dtype_supported(dtype), ErrorKind::Unsupported, "element type " + dtype_name(dtype) + " is not supported");
  size_ = checked_element_count(dtype, shape_);
  check(static_cast<int64_t>(bytes.size()) == storage_bytes(dtype, size_), ErrorKind::Malformed,
        "tensor of " + dtype_name(dtype) + shape_str(shape_) + " needs " + std::to_string(storage_bytes(dtype, size_)) +
            " bytes, got " + std::to_string(bytes.size()));
  byte_size_ = static_cast<int64_t>(bytes.size());
  bytes_ = storage_pool().adopt(new std::vector<uint8_t>(std::move(bytes)));
}

Tensor Tensor::view(const Tensor& storage, int64_t byte_offset, DType dtype, Shape shape) {
  Tensor t = header(dtype, std::move(shape));
  check(byte_offset >= 0 && byte_offset + t.byte_size_ <= storage.byte_size(), ErrorKind::Invalid, [&] {
    return "a view of " + std::to_string(t.byte_size_) + " bytes at offset " + std::to_string(byte_offset) +
           " does not fit in " + std::to_string(storage.byte_size()) + " bytes";
  });
  t.bytes_ = storage.bytes_;
  t.offset_ = storage.offset_ + byte_offset;
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  check(num_elements(shape) == size_, ErrorKind::Invalid,
        "cannot reshape " + shape_str(shape_) + " to " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

double Tensor::get(int64_t i) const {
  const uint8_t* p = bytes();
  switch (dtype_) {
    case DType::Float32: { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::Float16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return half_to_float(v); }
    case DType::Int4: return unpack_nibble(p, i, true);
    case DType::UInt4: return unpack_nibble(p, i, false);
    default: return static_cast<double>(get_int(i));
  }
}

void Tensor::set(int64_t i, double value) {
  uint8_t* p = mutable_bytes();
  switch (dtype_) {
    case DType::Float32: { float v = static_cast<float>(value); std::memcpy(p + 4 * i, &v, 4); return; }
    case DType::Float16: { uint16_t v = double_to_half(value); std::memcpy(p + 2 * i, &v, 2); return; }
    case DType::Bool: p[i] = value != 0; return;
    default: set_int(i, static_cast<int64_t>(value));
  }
}

int64_t Tensor::get_int(int64_t i) const {
  const uint8_t* p = bytes();
  switch (dtype_) {
    case DType::Int4: return unpack_nibble(p, i, true);
    case DType::UInt4: return unpack_nibble(p, i, false);
    case DType::Int8: return static_cast<int8_t>(p[i]);
    case DType::UInt8: case DType::Bool: return p[i];
    case DType::Int16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); return v; }
    case DType::UInt16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return v; }
    case DType::Int32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::Int64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); return v; }
    case DType::Float32: case DType::Float16: return static_cast<int64_t>(get(i));
    default: fail(ErrorKind::Unsupported, "element type " + dtype_name(dtype_) + " is not supported");
  }
}

void Tensor::set_int(int64_t i, int64_t value) {
  uint8_t* p = mutable_bytes();
  switch (dtype_) {
    case DType::Int4: case DType::UInt4: pack_nibble(p, i, static_cast<int>(value & 0xF)); return;
    case DType::Int8: case DType::UInt8: p[i] = static_cast<uint8_t>(value); return;
    case DType::Bool: p[i] = value != 0; return;
    case DType::Int16: case DType::UInt16: { uint16_t v = static_cast<uint16_t>(value); std::memcpy(p + 2 * i, &v, 2); return; }
    case DType::Int32: { int32_t v = static_cast<int32_t>(value); std::memcpy(p + 4 * i, &v, 4); return; }
    case DType::Int64: std::memcpy(p + 8 * i, &value, 8); return;
    case DType::Float32: case DType::Float16: set(i, static_cast<double>(value)); return;
    default: fail(ErrorKind::Unsupported, "element type " + dtype_name(dtype_) + " is not supported");
  }
}

std::vector<double> Tensor::to_doubles() const {
  std::vector<double> out(size_);
  if (dtype_ == DType::Float32) {
    const float* d = data<float>();
    for (int64_t i = 0; i < size_; ++i) out[i] = d[i];
  } else {
    for (int64_t i = 0; i < size_; ++i) out[i] = get(i);
  }
  return out;
}

std::vector<int64_t> Tensor::to_ints() const {
  std::vector<int64_t> out(size_);
  for (int64_t i = 0; i < size_; ++i) out[i] = get_int(i);
  return out;
}

Tensor Tensor::from_doubles(DType dtype, Shape shape, const std::vector<double>& values) {
  Tensor t(dtype, std::move(shape));
  check(static_cast<int64_t>(values.size()) == t.size(), ErrorKind::Invalid, "value count does not match shape");
  for (int64_t i = 0; i < t.size(); ++i) t.set(i, values[i]);
  return t;
}

Tensor Tensor::from_ints(DType dtype, Shape shape, const std::vector<int64_t>& values) {
  Tensor t(dtype, std::move(shape));
  check(static_cast<int64_t>(values.size()) == t.size(), ErrorKind::Invalid, "value count does not match shape");
  for (int64_t i = 0; i < t.size(); ++i) t.set_int(i, values[i]);
  return t;
}

Tensor Tensor::scalar(DType dtype, double value) {
  Tensor t(dtype, {});
  t.set(0, value);
  return t;
}

}  // namespace tetra
