// A C++-only reader for .tmn model files (the format of src/tinymnet/formats/tmn.py), so a
// program without Python can build a Plan from a bundled model:
//
//   tmn::TmnFile model("weights/mobilenet_v2_100_224_tf.tmn");
//   tmn::Plan plan(model.graph(), model.params(), threads, tmn::best_isa());
//
// The file is mapped read-only (mmap, pages read ahead), never copied: params() are views
// into the mapping (tensor offsets are 64-byte aligned), float32 tensors as they are, 8-bit
// tensors with their scale / zero_point, dequantized only when a Plan packs them, GEMM
// weights stored packed (`gemm_panels`) as panels a Plan uses in place (sharing the mapping,
// which then lives as long as the Plan). Every size in the fixed header and in the JSON
// tensor table is checked against the file, and the CRC-32 (zlib's) over header + data is
// verified; anything truncated or corrupt throws std::invalid_argument naming the file.
// Python's tinymnet.load builds its plan this way.
#pragma once

#include <cstddef>
#include <cstdint>
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
  TmnFile(TmnFile&&) = default;  // params() keeps pointing at the same mapping
  TmnFile& operator=(TmnFile&&) = default;

  const std::string& path() const { return path_; }
  const json::Value& header() const { return header_; }        // the whole JSON header
  const json::Value& graph() const { return header_.at("graph"); }
  const ParamMap& params() const { return params_; }           // every param (views)
  int64_t file_bytes() const { return size_; }
  uint32_t stored_crc() const { return crc_; }

 private:
  struct Unmap {
    size_t bytes;
    void operator()(unsigned char* p) const;
  };
  [[noreturn]] void fail(const std::string& message) const;

  std::string path_;
  std::shared_ptr<unsigned char> map_;  // params() that are packed GEMM weights share it
  int64_t size_ = 0;
  uint32_t crc_ = 0;
  json::Value header_;
  ParamMap params_;
};

}  // namespace tmn
