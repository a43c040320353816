// Scalar reference elementwise kernels.
#include "kernels/isa_kernels.h"

namespace tmn {

void activation_scalar(const float* x, float* y, int64_t count, const Activation& act) {
  for (int64_t i = 0; i < count; ++i) y[i] = apply_activation(x[i], act);
}

void add_scalar(const float* a, const float* b, float* y, int64_t count, const Activation& act) {
  for (int64_t i = 0; i < count; ++i) y[i] = apply_activation(a[i] + b[i], act);
}

void mul_channels_scalar(const float* x, const float* scale, float* y, int64_t pixels,
                         int32_t channels, int64_t ld) {
  for (int64_t p = 0; p < pixels; ++p)
    for (int32_t c = 0; c < channels; ++c) y[p * ld + c] = x[p * ld + c] * scale[c];
}

}  // namespace tmn
