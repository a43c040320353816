// Scalar reference depthwise convolution and the weight packing shared by every ISA.
#include <algorithm>

#include "kernels/isa_kernels.h"

namespace tmn {

void pack_dwconv_weights(const float* w, const float* bias, int32_t c, int32_t kh, int32_t kw,
                         int32_t cb, float* packed) {
  const int32_t taps = kh * kw;
  for (int32_t c0 = 0; c0 < c; c0 += cb) {
    for (int32_t j = 0; j < cb; ++j) *packed++ = (bias && c0 + j < c) ? bias[c0 + j] : 0.0f;
    for (int32_t t = 0; t < taps; ++t)
      for (int32_t j = 0; j < cb; ++j)
        *packed++ = c0 + j < c ? w[static_cast<int64_t>(c0 + j) * taps + t] : 0.0f;
  }
}

void dwconv_scalar(const DwconvArgs& d) {
  const int32_t cb = kScalarDwconvCB, taps = d.kh * d.kw;
  for (int32_t oy = d.oy_begin; oy < d.oy_end; ++oy) {
    for (int32_t ox = 0; ox < d.out_w; ++ox) {
      float* out = d.out + (static_cast<int64_t>(oy) * d.out_w + ox) * d.out_ld;
      for (int32_t c0 = 0; c0 < d.c; c0 += cb) {
        const float* w = d.packed_w + static_cast<int64_t>(c0 / cb) * cb * (1 + taps);
        float acc[kScalarDwconvCB];
        for (int32_t j = 0; j < cb; ++j) acc[j] = w[j];
        for (int32_t ky = 0; ky < d.kh; ++ky) {
          const int32_t iy = oy * d.sh - d.pad_top + ky * d.dil_h;
          if (iy < 0 || iy >= d.h) continue;
          for (int32_t kx = 0; kx < d.kw; ++kx) {
            const int32_t ix = ox * d.sw - d.pad_left + kx * d.dil_w;
            if (ix < 0 || ix >= d.w) continue;
            const float* in = d.in + (static_cast<int64_t>(iy) * d.w + ix) * d.in_ld + c0;
            const float* wt = w + (1 + ky * d.kw + kx) * cb;
            const int32_t cols = std::min(cb, d.c - c0);
            for (int32_t j = 0; j < cols; ++j) acc[j] += in[j] * wt[j];
          }
        }
        const int32_t cols = std::min(cb, d.c - c0);
        for (int32_t j = 0; j < cols; ++j) out[c0 + j] = apply_activation(acc[j], d.act);
      }
    }
  }
}

}  // namespace tmn
