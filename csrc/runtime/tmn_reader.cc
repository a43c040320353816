#include "runtime/tmn_reader.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tmn_reader.cc reads little-endian tensor data in place: big-endian hosts are not supported"
#endif

namespace tmn {

namespace {

struct Crc32Table {
  uint32_t v[256];
  Crc32Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      v[i] = c;
    }
  }
};

uint32_t read_u32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
uint64_t read_u64(const unsigned char* p) {
  return static_cast<uint64_t>(read_u32(p)) | static_cast<uint64_t>(read_u32(p + 4)) << 32;
}

constexpr size_t kFixedBytes = 64;
constexpr uint64_t kAlign = 64;

struct TensorInfo {
  std::string dtype;
  size_t itemsize = 0;
  std::vector<int64_t> shape;
  int64_t count = 1;
  uint64_t offset = 0, nbytes = 0;
};

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  static const Crc32Table table;
  const unsigned char* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table.v[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

void TmnFile::fail(const std::string& message) const {
  throw std::invalid_argument(path_ + ": " + message);
}

TmnFile::TmnFile(const std::string& path, bool verify_crc) : path_(path) {
  // Read the whole file into a 64-byte aligned buffer.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(std::string("cannot open: ") + std::strerror(errno));
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  if (std::fseek(f, 0, SEEK_END) != 0) fail("cannot seek");
  const long end = std::ftell(f);
  if (end < 0) fail("cannot tell the file size");
  std::rewind(f);
  size_ = end;
  if (static_cast<uint64_t>(size_) < kFixedBytes)
    fail("file is " + std::to_string(size_) + " bytes, too short for a .tmn header");
  const size_t alloc = (static_cast<size_t>(size_) + kAlign - 1) / kAlign * kAlign;
  buffer_.reset(static_cast<unsigned char*>(std::aligned_alloc(kAlign, alloc)));
  if (!buffer_) fail("cannot allocate " + std::to_string(size_) + " bytes");
  if (std::fread(buffer_.get(), 1, static_cast<size_t>(size_), f) != static_cast<size_t>(size_))
    fail("short read (file changed or unreadable)");
  const unsigned char* buf = buffer_.get();
  const uint64_t size = static_cast<uint64_t>(size_);

  // Fixed 64-byte header.
  if (std::memcmp(buf, "TINYMNET", 8) != 0) fail("not a .tmn file (bad magic)");
  const uint32_t version = read_u32(buf + 8);
  if (version != kVersion)
    fail(".tmn version " + std::to_string(version) + " is not supported (this reader reads version " +
         std::to_string(kVersion) + ")");
  const uint64_t hsize = read_u64(buf + 16), data_offset = read_u64(buf + 24),
                 data_size = read_u64(buf + 32);
  const uint32_t stored_crc = read_u32(buf + 40);
  if (hsize > kMaxHeaderBytes || data_offset % kAlign != 0 || data_offset < kFixedBytes + hsize ||
      data_offset > size || data_size > size - data_offset)
    fail("header sizes do not fit the file (" + std::to_string(size) +
         " bytes): truncated or corrupt");
  if (verify_crc) {
    const uint32_t actual = crc32(buf + data_offset, data_size, crc32(buf + kFixedBytes, hsize));
    if (actual != stored_crc) {
      char msg[128];
      std::snprintf(msg, sizeof msg, "checksum mismatch (stored %08x, computed %08x): the file is corrupt",
                    stored_crc, actual);
      fail(msg);
    }
  }

  // JSON header.
  try {
    header_ = json::Value::parse(std::string(reinterpret_cast<const char*>(buf + kFixedBytes), hsize));
  } catch (const std::invalid_argument& e) {
    fail(std::string("the JSON header is malformed: ") + e.what());
  }
  if (!header_.is_object() || !header_.has("graph") || !header_.at("graph").is_object() ||
      !header_.has("tensors") || !header_.at("tensors").is_object())
    fail("the JSON header is malformed (needs the objects \"graph\" and \"tensors\")");
  const auto& tensors = header_.at("tensors").as_object();
  const unsigned char* data = buf + data_offset;

  auto info = [&](const std::string& name) {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail("tensor '" + name + "' is missing from the header");
    TensorInfo t;
    try {
      const json::Value& meta = it->second;
      t.dtype = meta.at("dtype").as_string("dtype");
      t.itemsize = t.dtype == "float32" || t.dtype == "int32" ? 4
                   : t.dtype == "uint8" || t.dtype == "int8"  ? 1
                                                              : 0;
      if (!t.itemsize) fail("tensor '" + name + "' has unsupported dtype '" + t.dtype + "'");
      for (const json::Value& d : meta.at("shape").as_array("shape")) {
        const int64_t v = d.as_int("shape");
        if (v < 0) fail("tensor '" + name + "' has a negative dimension");
        if (v > 0 && t.count > std::numeric_limits<int64_t>::max() / 8 / v)
          fail("tensor '" + name + "' is too large");
        t.shape.push_back(v);
        t.count *= v;
      }
      const int64_t off = meta.at("offset").as_int("offset"), nb = meta.at("nbytes").as_int("nbytes");
      if (off < 0 || nb < 0) fail("tensor '" + name + "' has a negative offset or size");
      t.offset = static_cast<uint64_t>(off), t.nbytes = static_cast<uint64_t>(nb);
    } catch (const std::out_of_range&) {
      fail("tensor '" + name + "' has a malformed entry in the header");
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      if (what.compare(0, path_.size(), path_) == 0) throw;
      fail("tensor '" + name + "' has a malformed entry in the header: " + what);
    }
    if (t.offset % kAlign != 0) fail("tensor '" + name + "' is not 64-byte aligned");
    if (static_cast<uint64_t>(t.count) * t.itemsize != t.nbytes)
      fail("tensor '" + name + "': its shape does not match " + std::to_string(t.nbytes) + " bytes");
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail("tensor '" + name + "' lies outside the file's data (truncated?)");
    return t;
  };

  for (const auto& [name, meta] : tensors) {
    if (name.find('#') != std::string::npos) continue;  // quantization params, read below
    const TensorInfo t = info(name);
    ParamView view;
    view.shape = t.shape;
    const json::Value* scale_name = meta.is_object() ? meta.find("scale") : nullptr;
    if (!scale_name) {
      if (t.dtype != "float32")
        fail("tensor '" + name + "' is " + t.dtype + " without quantization parameters");
      view.data = reinterpret_cast<const float*>(data + t.offset);
      params_[name] = std::move(view);
      continue;
    }
    if (t.dtype != "uint8" && t.dtype != "int8")
      fail("tensor '" + name + "' has quantization parameters but is " + t.dtype);
    const json::Value* zp_name = meta.find("zero_point");
    const json::Value* axis_v = meta.find("axis");
    if (!scale_name->is_string() || !zp_name || !zp_name->is_string() ||
        (axis_v && !axis_v->is_number()))
      fail("tensor '" + name + "' has malformed quantization entries");
    const TensorInfo s = info(scale_name->as_string()), z = info(zp_name->as_string());
    int64_t axis = 0;
    try {
      axis = axis_v ? axis_v->as_int("axis") : 0;
    } catch (const std::invalid_argument&) {
      fail("tensor '" + name + "' has a non-integral axis");
    }
    const int64_t ndim = static_cast<int64_t>(t.shape.size());
    const int64_t channels = ndim ? t.shape[axis >= 0 && axis < ndim ? axis : 0] : 1;
    if (s.dtype != "float32" || z.dtype != "int32" || axis < 0 || axis >= std::max<int64_t>(ndim, 1) ||
        s.shape != z.shape || (s.count != 1 && s.count != channels))
      fail("tensor '" + name + "' has inconsistent quantization parameters");
    // Elements are laid out as [outer][channels][inner] around `axis`.
    int64_t inner = 1;
    for (int64_t d = axis + 1; d < ndim; ++d) inner *= t.shape[d];
    const float* scale = reinterpret_cast<const float*>(data + s.offset);
    const int32_t* zp = reinterpret_cast<const int32_t*>(data + z.offset);
    std::unique_ptr<float[]> out(new float[std::max<int64_t>(t.count, 1)]);
    const unsigned char* q = data + t.offset;
    const bool is_signed = t.dtype == "int8";
    for (int64_t i = 0; i < t.count; ++i) {
      const int64_t ch = s.count == 1 ? 0 : (i / inner) % channels;
      const float qv = is_signed ? static_cast<float>(static_cast<int8_t>(q[i]))
                                 : static_cast<float>(q[i]);
      out[i] = (qv - static_cast<float>(zp[ch])) * scale[ch];
    }
    view.data = out.get();
    owned_.push_back(std::move(out));
    params_[name] = std::move(view);
  }
}

}  // namespace tmn
