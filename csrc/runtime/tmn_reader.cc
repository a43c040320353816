#include "runtime/tmn_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// CRC-32 by slicing-by-8: v[k][b] is the CRC of byte b followed by k zero bytes, so 8 input
// bytes take 8 independent table lookups instead of an 8-step dependency chain.
struct Crc32Tables {
  uint32_t v[8][256];
  Crc32Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      v[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (uint32_t i = 0; i < 256; ++i) v[k][i] = (v[k - 1][i] >> 8) ^ v[0][v[k - 1][i] & 0xFFu];
  }
};

// One 8-byte step on the inverted CRC state (little-endian words: see the top of this file).
inline uint32_t crc_step8(const Crc32Tables& t, uint32_t state, const unsigned char* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  x ^= state;
  return t.v[7][x & 0xFF] ^ t.v[6][(x >> 8) & 0xFF] ^ t.v[5][(x >> 16) & 0xFF] ^
         t.v[4][(x >> 24) & 0xFF] ^ t.v[3][(x >> 32) & 0xFF] ^ t.v[2][(x >> 40) & 0xFF] ^
         t.v[1][(x >> 48) & 0xFF] ^ t.v[0][x >> 56];
}

uint32_t crc_bytes(const Crc32Tables& t, uint32_t state, const unsigned char* p, size_t n) {
  for (; n >= 8; n -= 8, p += 8) state = crc_step8(t, state, p);
  for (; n > 0; --n) state = t.v[0][(state ^ *p++) & 0xFFu] ^ (state >> 8);
  return state;
}

// a * b modulo the CRC polynomial, in the reflected bit order (bit 31 holds x^0).
uint32_t mul_mod_p(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 31; i >= 0; --i) {
    if ((a >> i) & 1u) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ 0xEDB88320u : b >> 1;  // b *= x
  }
  return product;
}

// x^(8 n) modulo the polynomial: what appending n zero bytes multiplies a CRC by.
uint32_t x_pow_8n(uint64_t n) {
  uint32_t result = 1u << 31, power = 1u << 23;  // x^0, x^8
  for (; n; n >>= 1, power = mul_mod_p(power, power))
    if (n & 1u) result = mul_mod_p(power, result);
  return result;
}

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
  int32_t panel_width = 0;  // > 0: a GEMM weight stored packed in panels of this width
};

// Four interleaved table streams keep the lookups of four quarters in flight at once (one
// stream is bound by its dependency chain); their CRCs are then joined as zlib's
// crc32_combine does: crc(A + B) = crc(A) * x^(8 |B|) + crc(B). state is inverted (~crc).
uint32_t crc32_tables(const unsigned char* p, size_t size, uint32_t state) {
  static const Crc32Tables tables;
  const size_t quarter = size / 32 * 8;
  uint32_t s[4] = {state, ~0u, ~0u, ~0u};
  for (size_t i = 0; i < quarter; i += 8)
    for (int j = 0; j < 4; ++j) s[j] = crc_step8(tables, s[j], p + j * quarter + i);
  if (quarter) {
    const uint32_t shift = x_pow_8n(quarter);
    uint32_t joined = ~s[0];
    for (int j = 1; j < 4; ++j) joined = mul_mod_p(shift, joined) ^ ~s[j];
    s[0] = ~joined;
  }
  return crc_bytes(tables, s[0], p + 4 * quarter, size - 4 * quarter);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TMN_CRC_CLMUL 1
// CRC-32 by carry-less multiplication (Intel, "Fast CRC Computation for Generic Polynomials
// Using PCLMULQDQ", 2009, in the bit-reflected form): four 128-bit accumulators are folded
// over 64 bytes per step, then into one, then reduced to 32 bits (Barrett). ~10x the table
// code: the checksum of a bundled model costs ~0.1 ms instead of ~0.6-1 ms. The constants are
// x^k mod P for the fold distances (bit-reflected, shifted left by one), P itself and
// floor(x^64 / P). size >= 64; returns the inverted state as crc32_tables.
#define TMN_CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))
TMN_CLMUL_TARGET inline __m128i load16(const unsigned char* q) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
}
// x * k (its two 64-bit halves times k's two constants) + next: x moved forward by k's distance.
TMN_CLMUL_TARGET inline __m128i fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)),
                       next);
}
// The last step of both folding loops: x0 holds everything before p folded to 128 bits;
// fold in the remaining 16-byte blocks, reduce to 32 bits, then the last < 16 bytes by table.
TMN_CLMUL_TARGET uint32_t clmul_finish(__m128i x0, const unsigned char* p, size_t size) {
  const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);  // fold by 128 bits
  const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124);              // 64 -> 32 bits
  const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);  // mu, P
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  for (; size >= 16; p += 16, size -= 16) x0 = fold(x0, k3k4, load16(p));
  // 128 -> 64 bits (appending 32 zero bits), 64 -> 32, then Barrett.
  x0 = _mm_xor_si128(_mm_clmulepi64_si128(x0, k3k4, 0x10), _mm_srli_si128(x0, 8));
  x0 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x0, mask32), k5, 0x00), _mm_srli_si128(x0, 4));
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), poly, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00);
  const uint32_t folded = static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x0, t), 1));
  static const Crc32Tables tables;
  return crc_bytes(tables, folded, p, size);
}

TMN_CLMUL_TARGET uint32_t crc32_clmul(const unsigned char* p, size_t size, uint32_t state) {
  const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);  // fold by 512 bits
  const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
  __m128i x0 = _mm_xor_si128(load16(p), _mm_cvtsi32_si128(static_cast<int>(state)));
  __m128i x1 = load16(p + 16), x2 = load16(p + 32), x3 = load16(p + 48);
  p += 64, size -= 64;
  for (; size >= 64; p += 64, size -= 64) {
    x0 = fold(x0, k1k2, load16(p));
    x1 = fold(x1, k1k2, load16(p + 16));
    x2 = fold(x2, k1k2, load16(p + 32));
    x3 = fold(x3, k1k2, load16(p + 48));
  }
  return clmul_finish(fold(fold(fold(x0, k3k4, x1), k3k4, x2), k3k4, x3), p, size);
}

// The same with 256-bit carry-less multiplies (VPCLMULQDQ: Zen 3+, Ice Lake+), which do two
// folds per instruction: four 32-byte accumulators fold 128 bytes per step (the constants
// are x^(1024 +- 32) mod P as above), ~2x the 128-bit loop, which the multiplier's
// throughput bounds. size >= 128.
#define TMN_VPCLMUL_TARGET __attribute__((target("vpclmulqdq,avx2,pclmul,sse4.1")))
TMN_VPCLMUL_TARGET inline __m256i load32(const unsigned char* q) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
}
TMN_VPCLMUL_TARGET inline __m256i fold256(__m256i x, __m256i k, __m256i next) {
  return _mm256_xor_si256(
      _mm256_xor_si256(_mm256_clmulepi64_epi128(x, k, 0x00), _mm256_clmulepi64_epi128(x, k, 0x11)), next);
}
TMN_VPCLMUL_TARGET uint32_t crc32_vpclmul(const unsigned char* p, size_t size, uint32_t state) {
  const __m256i k = _mm256_set_epi64x(0x14a7fe880, 0x1e88ef372, 0x14a7fe880, 0x1e88ef372);
  const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
  __m256i x[4];
  for (int j = 0; j < 4; ++j) x[j] = load32(p + 32 * j);
  x[0] = _mm256_xor_si256(x[0], _mm256_set_m128i(_mm_setzero_si128(),
                                                 _mm_cvtsi32_si128(static_cast<int>(state))));
  p += 128, size -= 128;
  for (; size >= 128; p += 128, size -= 128)
    for (int j = 0; j < 4; ++j) x[j] = fold256(x[j], k, load32(p + 32 * j));
  // The eight 16-byte lanes, in data order, folded into one.
  __m128i acc = _mm256_castsi256_si128(x[0]);
  for (int j = 0; j < 4; ++j) {
    if (j) acc = fold(acc, k3k4, _mm256_castsi256_si128(x[j]));
    acc = fold(acc, k3k4, _mm256_extracti128_si256(x[j], 1));
  }
  return clmul_finish(acc, p, size);
}
#endif

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
#ifdef TMN_CRC_CLMUL
  static const bool clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  static const bool vpclmul = clmul && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx2");
  if (vpclmul && size >= 256) return ~crc32_vpclmul(p, size, ~crc);
  if (clmul && size >= 64) return ~crc32_clmul(p, size, ~crc);
#endif
  return ~crc32_tables(p, size, ~crc);
}

void TmnFile::Unmap::operator()(unsigned char* p) const { munmap(p, bytes); }

void TmnFile::fail(const std::string& message) const {
  throw std::invalid_argument(path_ + ": " + message);
}

TmnFile::TmnFile(const std::string& path, bool verify_crc) : path_(path) {
  // Map the whole file read-only (page-aligned, so 64-byte aligned tensors stay aligned).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("not a regular file");
  size_ = st.st_size;
  if (static_cast<uint64_t>(size_) < kFixedBytes)
    fail("file is " + std::to_string(size_) + " bytes, too short for a .tmn header");
  int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
  flags |= MAP_POPULATE;  // every page is read (checksum, packing): map them all at once
#endif
  void* mapped = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, flags, fd, 0);
  if (mapped == MAP_FAILED) fail(std::string("cannot map: ") + std::strerror(errno));
  map_ = std::shared_ptr<unsigned char>(static_cast<unsigned char*>(mapped),
                                        Unmap{static_cast<size_t>(size_)});
  const unsigned char* buf = map_.get();
  const uint64_t size = static_cast<uint64_t>(size_);

  // Fixed 64-byte header.
  if (std::memcmp(buf, "TINYMNET", 8) != 0) fail("not a .tmn file (bad magic)");
  const uint32_t version = read_u32(buf + 8);
  if (version != kVersion)
    fail(".tmn version " + std::to_string(version) + " is not supported (this reader reads version " +
         std::to_string(kVersion) + ")");
  const uint64_t hsize = read_u64(buf + 16), data_offset = read_u64(buf + 24),
                 data_size = read_u64(buf + 32);
  const uint32_t stored_crc = crc_ = read_u32(buf + 40);
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
  const json::Value& tensors = header_.at("tensors");
  const unsigned char* data = buf + data_offset;

  auto info = [&](const std::string& name) {
    const json::Value* entry = tensors.find(name);
    if (!entry) fail("tensor '" + name + "' is missing from the header");
    TensorInfo t;
    try {
      const json::Value& meta = *entry;
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
    if (const json::Value* nr = entry->is_object() ? entry->find("gemm_panels") : nullptr) {
      // A float32 GEMM weight (n, k) or (n, k, 1, 1) stored in the panels of width nr.
      const bool matrix = t.shape.size() == 2 || (t.shape.size() == 4 && t.shape[2] == 1 && t.shape[3] == 1);
      if (!nr->is_number() || t.dtype != "float32" || !matrix || t.count == 0 ||
          t.shape[0] > std::numeric_limits<int32_t>::max() || t.shape[1] > std::numeric_limits<int32_t>::max())
        fail("tensor '" + name + "' has a malformed gemm_panels entry");
      int64_t width = 0;
      try {
        width = nr->as_int("gemm_panels");
      } catch (const std::invalid_argument&) {
        fail("tensor '" + name + "' has a non-integral gemm_panels");
      }
      if (width != 8 && width != 16 && width != 32)
        fail("tensor '" + name + "' has gemm_panels " + std::to_string(width) + " (8, 16 or 32 expected)");
      t.panel_width = static_cast<int32_t>(width);
      const int64_t floats = gemm_packed_floats(static_cast<int32_t>(t.shape[1]),
                                                static_cast<int32_t>(t.shape[0]), t.panel_width);
      if (static_cast<uint64_t>(floats) * 4 != t.nbytes)
        fail("tensor '" + name + "': its shape packed in panels of " + std::to_string(width) +
             " does not match " + std::to_string(t.nbytes) + " bytes");
    } else if (static_cast<uint64_t>(t.count) * t.itemsize != t.nbytes)
      fail("tensor '" + name + "': its shape does not match " + std::to_string(t.nbytes) + " bytes");
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail("tensor '" + name + "' lies outside the file's data (truncated?)");
    return t;
  };

  for (size_t i = 0; i < tensors.member_count(); ++i) {
    const std::string& name = tensors.member_key(i);
    const json::Value& meta = tensors.member_value(i);
    if (name.find('#') != std::string::npos) continue;  // quantization params, read below
    const TensorInfo t = info(name);
    ParamView view;
    view.owner = map_;
    view.shape = t.shape;
    const json::Value* scale_name = meta.is_object() ? meta.find("scale") : nullptr;
    if (!scale_name) {
      if (t.dtype != "float32")
        fail("tensor '" + name + "' is " + t.dtype + " without quantization parameters");
      const float* floats = reinterpret_cast<const float*>(data + t.offset);
      if (t.panel_width) {
        view.packed.panels = floats, view.packed.nr = t.panel_width, view.packed.owner = map_;
        view.packed.n = static_cast<int32_t>(t.shape[0]), view.packed.k = static_cast<int32_t>(t.shape[1]);
      } else {
        view.data = floats;
      }
      params_[name] = std::move(view);
      continue;
    }
    if (t.panel_width) fail("tensor '" + name + "' is stored in gemm_panels with quantization parameters");
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
    view.q = data + t.offset;
    view.q_signed = t.dtype == "int8";
    view.scale = reinterpret_cast<const float*>(data + s.offset);
    view.zero_point = reinterpret_cast<const int32_t*>(data + z.offset);
    view.q_channels = s.count;
    view.q_inner = inner;
    params_[name] = std::move(view);
  }
}

}  // namespace tmn
