// avx2 GEMM: a 6-row x 2-vector register tile (see gemm_simd.h).
#include "kernels/gemm/gemm_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(2 * Vec::kLanes == kAvx2GemmNR, "panel width must match packing");
void gemm_avx2(const GemmArgs& args) { gemm_simd<6, 2>(args); }
void gemv_q8_avx2(const GemvQ8Args& args) { gemv_q8_simd(args); }
}  // namespace tmn
