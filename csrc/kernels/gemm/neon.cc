// neon GEMM: a 6-row x 4-vector register tile (see gemm_simd.h).
#include "kernels/gemm/gemm_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(4 * Vec::kLanes == kNeonGemmNR, "panel width must match packing");
void gemm_neon(const GemmArgs& args) { gemm_simd<6, 4>(args); }
void gemv_q8_neon(const GemvQ8Args& args) { gemv_q8_simd(args); }
}  // namespace tmn
