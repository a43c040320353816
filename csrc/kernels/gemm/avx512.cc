// avx512 GEMM: up to 12 rows x 2 vectors (24 zmm accumulators; see gemm_simd.h), 13 rows for
// GEMMs of <= 64 rows (kSmallRows). 13-14 rows everywhere measured 1-3% slower at small K.
// Panels stream from L2 (a 1024-deep panel is 128 KB): prefetching them 512 B (4 k) ahead made
// the 7x7 layers of V1 1.0 (K = 512, 1024; 49 rows) 3-4% faster, the others within noise.
#define TMN_GEMM_PANEL_PREFETCH 128
#include "kernels/gemm/gemm_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(2 * Vec::kLanes == kAvx512GemmNR, "panel width must match packing");
void gemm_avx512(const GemmArgs& args) { gemm_simd<12, 2, 13>(args); }
void gemv_q8_avx512(const GemvQ8Args& args) { gemv_q8_simd(args); }
}  // namespace tmn
