// A C++-only reader for .tmn model files (the format of src/tinymnet/formats/tmn.py), so a
// program without Python can build a Plan from a bundled model:
//
//   tmn::TmnFile model("weights/mobilenet_v2_100_224_tf.tmn");
//   tmn::Plan plan(model.graph(), model.params(), threads, tmn::best_isa());
//
// The whole file is read into one 64-byte aligned buffer. Float32 tensors are views into that
// buffer (tensor offsets are 64-byte aligned); 8-bit tensors are dequantized at load into
// owned float storage, real = (q - zero_point) * scale along `axis` (float32 arithmetic, as
// tmn.py's QuantizedTensor.dequantize). Every size in the fixed header and in the JSON tensor
// table is checked against the file, and the CRC-32 (zlib's) over header + data is verified;
// anything truncated or corrupt throws std::invalid_argument naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/plan.h"

namespace tmn {

// CRC-32 with zlib's polynomial (reflected 0xEDB88320): crc32(b, crc32(a)) == crc32(a + b),
// crc32 of nothing is 0, as zlib.crc32.
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

class TmnFile {
 public:
  static constexpr uint32_t kVersion = 1;
  static constexpr uint64_t kMaxHeaderBytes = 64ull << 20;

  // Reads and validates `path`; verify_crc = false skips the checksum (not the size checks).
  explicit TmnFile(const std::string& path, bool verify_crc = true);
  TmnFile(const TmnFile&) = delete;
  TmnFile& operator=(const TmnFile&) = delete;
  TmnFile(TmnFile&&) = default;  // params() keeps pointing at the same (heap) storage
  TmnFile& operator=(TmnFile&&) = default;

  const std::string& path() const { return path_; }
  const json::Value& header() const { return header_; }        // the whole JSON header
  const json::Value& graph() const { return header_.at("graph"); }
  const ParamMap& params() const { return params_; }           // every float32 param
  int64_t file_bytes() const { return size_; }

 private:
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  [[noreturn]] void fail(const std::string& message) const;

  std::string path_;
  std::unique_ptr<unsigned char, Free> buffer_;
  int64_t size_ = 0;
  json::Value header_;
  std::vector<std::unique_ptr<float[]>> owned_;  // dequantized tensors
  ParamMap params_;
};

}  // namespace tmn
