// avx512 GEMM: up to 12 rows x 2 vectors (24 zmm accumulators; see gemm_simd.h). 14 rows fit
// too (28 + 2 weights + 1 broadcast) but measured 1-3% slower at small K and never faster.
#include "kernels/gemm/gemm_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(2 * Vec::kLanes == kAvx512GemmNR, "panel width must match packing");
void gemm_avx512(const GemmArgs& args) { gemm_simd<12, 2>(args); }
}  // namespace tmn
