// Declarations of each ISA's kernel entry points (defined in kernels/<op>/<isa>.cc) and the
// panel/block sizes their packed weights use. runtime/tables.cc gathers them into KernelTables.
#pragma once

#include "kernels/kernels.h"

namespace tmn {

#define TMN_DECLARE_ISA_KERNELS(isa)                                                        \
  void gemm_##isa(const GemmArgs& args);                                                    \
  void gemv_q8_##isa(const GemvQ8Args& args);                                               \
  void dwconv_##isa(const DwconvArgs& args);                                                \
  void stem_##isa(const StemArgs& args);                                                    \
  void pool_##isa(const PoolArgs& args);                                                    \
  void global_avg_pool_##isa(const float* in, int64_t pixels, int32_t channels, int64_t ld, \
                             float* out);                                                   \
  void activation_##isa(const float* x, float* y, int64_t count, const Activation& act);    \
  void add_##isa(const float* a, const float* b, float* y, int64_t count,                   \
                 const Activation& act);                                                    \
  void mul_channels_##isa(const float* x, const float* scale, float* y, int64_t pixels,     \
                          int32_t channels, int64_t ld);

TMN_DECLARE_ISA_KERNELS(scalar)
TMN_DECLARE_ISA_KERNELS(avx2)
TMN_DECLARE_ISA_KERNELS(avx512)
TMN_DECLARE_ISA_KERNELS(neon)

#undef TMN_DECLARE_ISA_KERNELS

// Panel width (GEMM) and channel blocks (depthwise, stem) of each ISA's packed weights.
constexpr int32_t kScalarGemmNR = 8, kScalarDwconvCB = 8, kScalarStemCB = 8;
constexpr int32_t kAvx2GemmNR = 16, kAvx2DwconvCB = 8, kAvx2StemCB = 8;
constexpr int32_t kAvx512GemmNR = 32, kAvx512DwconvCB = 16, kAvx512StemCB = 16;
constexpr int32_t kNeonGemmNR = 16, kNeonDwconvCB = 4, kNeonStemCB = 4;

}  // namespace tmn
