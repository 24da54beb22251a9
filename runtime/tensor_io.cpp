#include "runtime/tensor_io.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "importer/error.h"
#include "importer/onnx_loader.h"

namespace tetra {
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), ErrorKind::Io, "tensor file '" + path + "' does not exist");
  std::ifstream in(path, std::ios::binary);
  check(in.good(), ErrorKind::Io, "cannot open '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

NamedTensor read_tensor_pb(const std::string& path) {
  onnx::TensorProto proto;
  check(proto.ParseFromString(slurp(path)), ErrorKind::Malformed, "'" + path + "' is not a valid TensorProto");
  try {
    return {proto.name(), tensor_from_proto(proto)};
  } catch (const Error& e) {
    throw Error(e.kind(), "'" + path + "': " + e.what());
  }
}

void write_tensor_pb(const std::string& path, const Tensor& tensor, const std::string& name) {
  onnx::TensorProto proto;
  tensor_to_proto(tensor, name, &proto);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(out.good(), ErrorKind::Io, "cannot write '" + path + "'");
    check(proto.SerializeToOstream(&out), ErrorKind::Io, "cannot write '" + path + "'");
    out.close();
    check(out.good(), ErrorKind::Io, "cannot write '" + path + "'");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail(ErrorKind::Io, "cannot write '" + path + "'");
  }
}

// NumPy .npy v1-v3: magic, version, header length, a Python dict literal, then the data.
Tensor read_npy(const std::string& path) {
  std::string bytes = slurp(path);
  const std::string what = "'" + path + "'";
  check(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, ErrorKind::Malformed, what + " is not a .npy file");
  int major = static_cast<uint8_t>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    offset = 10;
  } else {
    check(bytes.size() >= 12, ErrorKind::Malformed, what + " is truncated");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    offset = 12;
  }
  check(offset + header_len <= bytes.size(), ErrorKind::Malformed, what + " is truncated");
  std::string header = bytes.substr(offset, header_len);
  auto field = [&](const std::string& key) {
    size_t k = header.find("'" + key + "'");
    check(k != std::string::npos, ErrorKind::Malformed, what + ": header lacks '" + key + "'");
    return header.substr(header.find(':', k) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  std::string fortran = field("fortran_order");
  check(fortran.find("False") < fortran.find(','), ErrorKind::Unsupported, what + ": Fortran-ordered arrays are not supported");
  std::string shape_text = field("shape");
  shape_text = shape_text.substr(shape_text.find('(') + 1);
  shape_text = shape_text.substr(0, shape_text.find(')'));
  Shape shape;
  std::stringstream ss(shape_text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    try {
      shape.push_back(std::stoll(item));
    } catch (const std::exception&) {
      fail(ErrorKind::Malformed, what + ": bad shape '" + shape_text + "'");
    }
  }
  static const std::map<std::string, DType> kinds = {
      {"<f4", DType::Float32}, {"<f2", DType::Float16}, {"|i1", DType::Int8}, {"|u1", DType::UInt8},
      {"<i4", DType::Int32},   {"<i8", DType::Int64},   {"|b1", DType::Bool}};
  auto kind = kinds.find(descr);
  check(kind != kinds.end(), ErrorKind::Unsupported, what + ": element type '" + descr + "' is not supported");
  int64_t count = checked_element_count(kind->second, shape);
  size_t data_offset = offset + header_len;
  size_t need = static_cast<size_t>(storage_bytes(kind->second, count));
  check(bytes.size() - data_offset == need, ErrorKind::Malformed,
        what + ": holds " + std::to_string(bytes.size() - data_offset) + " data bytes, shape needs " + std::to_string(need));
  return Tensor(kind->second, shape, std::vector<uint8_t>(bytes.begin() + data_offset, bytes.end()));
}

Tensor read_tensor_file(const std::string& path) {
  if (fs::path(path).extension() == ".npy") return read_npy(path);
  return read_tensor_pb(path).tensor;
}

}  // namespace tetra
