// Scalar reference GEMM and the weight packing shared by every ISA.
#include <algorithm>

#include "kernels/isa_kernels.h"

namespace tmn {

void pack_gemm_weights(const float* w, const float* bias, int32_t k, int32_t n, int32_t nr,
                       float* packed) {
  // A transpose, done in blocks of 16 k values (one cache line of each source row) so both
  // the rows read and the panel rows written stay in L1: loading a model packs a few MB.
  constexpr int32_t kb = 16;
  for (int32_t n0 = 0; n0 < n; n0 += nr) {
    const int32_t width = gemm_panel_width(n, nr, n0), cols = std::min(width, n - n0);
    for (int32_t j = 0; j < width; ++j) *packed++ = (bias && j < cols) ? bias[n0 + j] : 0.0f;
    for (int32_t k0 = 0; k0 < k; k0 += kb) {
      const int32_t k1 = std::min(k, k0 + kb);
      float* dst = packed + static_cast<int64_t>(k0) * width;
      for (int32_t j = 0; j < cols; ++j) {
        const float* src = w + static_cast<int64_t>(n0 + j) * k;
        for (int32_t kk = k0; kk < k1; ++kk) dst[(kk - k0) * width + j] = src[kk];
      }
      for (int32_t j = cols; j < width; ++j)
        for (int32_t kk = k0; kk < k1; ++kk) dst[(kk - k0) * width + j] = 0.0f;
    }
    packed += static_cast<int64_t>(k) * width;
  }
}

void gemm_scalar(const GemmArgs& g) {
  const int32_t nr = kScalarGemmNR;
  const int64_t panel = (static_cast<int64_t>(g.k) + 1) * nr;
  for (int64_t i = 0; i < g.m; ++i) {
    const float* a = g.a + i * g.lda;
    float* c = g.c + i * g.ldc;
    const float* r = g.residual ? g.residual + i * g.ldr : nullptr;
    for (int32_t n0 = 0; n0 < g.n; n0 += nr) {
      const int32_t width = gemm_panel_width(g.n, nr, n0);
      const float* w = g.packed_w + (n0 / nr) * panel;
      float acc[kScalarGemmNR];
      for (int32_t j = 0; j < width; ++j) acc[j] = w[j];
      for (int32_t kk = 0; kk < g.k; ++kk) {
        const float av = a[kk];
        const float* wk = w + (kk + 1) * width;
        for (int32_t j = 0; j < width; ++j) acc[j] += av * wk[j];
      }
      const int32_t cols = std::min(width, g.n - n0);
      for (int32_t j = 0; j < cols; ++j)
        c[n0 + j] = apply_activation(acc[j] + (r ? r[n0 + j] : 0.0f), g.act);
    }
  }
}

}  // namespace tmn
