// avx2 pooling (see pool_simd.h).
#include "kernels/isa_kernels.h"
#include "kernels/pool/pool_simd.h"

namespace tmn {
void pool_avx2(const PoolArgs& args) { pool_simd(args); }
void global_avg_pool_avx2(const float* in, int64_t pixels, int32_t channels, int64_t ld,
                            float* out) {
  global_avg_pool_simd(in, pixels, channels, ld, out);
}
}  // namespace tmn
