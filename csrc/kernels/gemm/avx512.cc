// avx512 GEMM: a 12-row x 2-vector register tile (see gemm_simd.h).
#include "kernels/gemm/gemm_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(2 * Vec::kLanes == kAvx512GemmNR, "panel width must match packing");
void gemm_avx512(const GemmArgs& args) { gemm_simd<12, 2>(args); }
}  // namespace tmn
