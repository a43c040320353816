#include "runtime/isa.h"

#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define TMN_X86 1
#endif

namespace tmn {

// Defined in the per-ISA translation units.
extern const KernelTable kScalarTable;
#if TMN_X86
extern const KernelTable kAvx2Table;
extern const KernelTable kAvx512Table;
#endif
#if defined(__aarch64__)
extern const KernelTable kNeonTable;
#endif

namespace {

#if TMN_X86
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

struct X86Features {
  bool avx2_fma = false;
  bool avx512 = false;
};

X86Features detect_x86() {
  X86Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17);
  const bool avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  f.avx2_fma = ymm_state && avx2 && fma;
  f.avx512 = f.avx2_fma && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}
#endif

std::mutex g_isa_mutex;
bool g_isa_set = false;
Isa g_isa = Isa::scalar;

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown ISA '" + name +
                              "' (expected one of: scalar, avx2, avx512, neon)");
}

bool isa_available(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#if TMN_X86
    case Isa::avx2: return detect_x86().avx2_fma;
    case Isa::avx512: return detect_x86().avx512;
#endif
#if defined(__aarch64__)
    case Isa::neon: return true;
#endif
    default: return false;
  }
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
    if (isa_available(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() { return available_isas().back(); }

Isa current_isa() {
  std::lock_guard<std::mutex> lock(g_isa_mutex);
  if (!g_isa_set) {
    const char* env = std::getenv("TINYMNET_ISA");
    Isa isa = best_isa();
    if (env && *env) {
      try {
        isa = parse_isa(env);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("TINYMNET_ISA=") + env + ": " + e.what());
      }
      if (!isa_available(isa))
        throw std::invalid_argument(std::string("TINYMNET_ISA=") + env +
                                    ": this CPU or build does not support it");
    }
    g_isa = isa;
    g_isa_set = true;
  }
  return g_isa;
}

void set_current_isa(Isa isa) {
  if (!isa_available(isa))
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                "' is not supported by this CPU or build");
  std::lock_guard<std::mutex> lock(g_isa_mutex);
  g_isa = isa;
  g_isa_set = true;
}

int64_t gemm_weight_block_bytes() {
  static const int64_t bytes = [] {
    const char* env = std::getenv("TINYMNET_GEMM_BLOCK_KB");
    if (env && *env) {
      const long kb = std::strtol(env, nullptr, 10);
      if (kb > 0) return static_cast<int64_t>(kb) << 10;
    }
    long l2 = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (l2 <= 0) l2 = 1L << 20;
    return static_cast<int64_t>(l2) / 4;
  }();
  return bytes;
}

const KernelTable& kernel_table(Isa isa) {
  switch (isa) {
#if TMN_X86
    case Isa::avx2: return kAvx2Table;
    case Isa::avx512: return kAvx512Table;
#endif
#if defined(__aarch64__)
    case Isa::neon: return kNeonTable;
#endif
    default: return kScalarTable;
  }
}

}  // namespace tmn
