// One KernelTable per ISA compiled into this build (no ISA flags here: only pointers).
#include "kernels/isa_kernels.h"

namespace tmn {

#define TMN_TABLE(var, isa, label, prefix)                                                   \
  extern const KernelTable var;                                                              \
  const KernelTable var = {label,         prefix##GemmNR, prefix##DwconvCB, prefix##StemCB,  \
                           gemm_##isa,    gemv_q8_##isa,  dwconv_##isa,     stem_##isa,      \
                           pool_##isa,                                                      \
                           global_avg_pool_##isa, activation_##isa, add_##isa,               \
                           mul_channels_##isa};

TMN_TABLE(kScalarTable, scalar, "scalar", kScalar)
#if defined(__x86_64__) || defined(_M_X64)
TMN_TABLE(kAvx2Table, avx2, "avx2", kAvx2)
TMN_TABLE(kAvx512Table, avx512, "avx512", kAvx512)
#endif
#if defined(__aarch64__)
TMN_TABLE(kNeonTable, neon, "neon", kNeon)
#endif

#undef TMN_TABLE

}  // namespace tmn
