// avx512 elementwise kernels (see eltwise_simd.h).
#include "kernels/eltwise/eltwise_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
void activation_avx512(const float* x, float* y, int64_t count, const Activation& act) {
  activation_simd(x, y, count, act);
}
void add_avx512(const float* a, const float* b, float* y, int64_t count, const Activation& act) {
  add_simd(a, b, y, count, act);
}
void mul_channels_avx512(const float* x, const float* scale, float* y, int64_t pixels,
                         int32_t channels, int64_t ld) {
  mul_channels_simd(x, scale, y, pixels, channels, ld);
}
}  // namespace tmn
