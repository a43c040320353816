// Scalar reference stem convolution and the weight packing shared by every ISA.
#include <algorithm>

#include "kernels/isa_kernels.h"

namespace tmn {

namespace {
constexpr int32_t kTaps = kStemK * kStemK * kStemCin;  // (ky, kx, ci) order
}

void pack_stem_weights(const float* w, const float* bias, int32_t cout, int32_t cb,
                       float* packed) {
  for (int32_t c0 = 0; c0 < cout; c0 += cb) {
    for (int32_t j = 0; j < cb; ++j) *packed++ = (bias && c0 + j < cout) ? bias[c0 + j] : 0.0f;
    for (int32_t ky = 0; ky < kStemK; ++ky)
      for (int32_t kx = 0; kx < kStemK; ++kx)
        for (int32_t ci = 0; ci < kStemCin; ++ci)
          for (int32_t j = 0; j < cb; ++j) {
            const int32_t co = c0 + j;  // w is (co, ci, ky, kx)
            *packed++ = co < cout ? w[((static_cast<int64_t>(co) * kStemCin + ci) * kStemK + ky) *
                                          kStemK + kx]
                                  : 0.0f;
          }
  }
}

void stem_scalar(const StemArgs& d) {
  const int32_t cb = kScalarStemCB;
  for (int32_t oy = d.oy_begin; oy < d.oy_end; ++oy) {
    for (int32_t ox = 0; ox < d.out_w; ++ox) {
      float* out = d.out + (static_cast<int64_t>(oy) * d.out_w + ox) * d.out_ld;
      for (int32_t c0 = 0; c0 < d.cout; c0 += cb) {
        const float* w = d.packed_w + static_cast<int64_t>(c0 / cb) * cb * (1 + kTaps);
        float acc[kScalarStemCB];
        for (int32_t j = 0; j < cb; ++j) acc[j] = w[j];
        for (int32_t ky = 0; ky < kStemK; ++ky) {
          const int32_t iy = oy * kStemStride - d.pad_top + ky;
          if (iy < 0 || iy >= d.h) continue;
          for (int32_t kx = 0; kx < kStemK; ++kx) {
            const int32_t ix = ox * kStemStride - d.pad_left + kx;
            if (ix < 0 || ix >= d.w) continue;
            const float* in = d.in + (static_cast<int64_t>(iy) * d.w + ix) * d.in_ld;
            for (int32_t ci = 0; ci < kStemCin; ++ci) {
              const float* wt = w + (1 + (ky * kStemK + kx) * kStemCin + ci) * cb;
              for (int32_t j = 0; j < cb; ++j) acc[j] += in[ci] * wt[j];
            }
          }
        }
        const int32_t cols = std::min(cb, d.cout - c0);
        for (int32_t j = 0; j < cols; ++j) out[c0 + j] = apply_activation(acc[j], d.act);
      }
    }
  }
}

}  // namespace tmn
