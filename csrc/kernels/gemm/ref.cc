// Scalar reference GEMM and the weight packing shared by every ISA.
#include <algorithm>
#include <cstring>

#include "kernels/isa_kernels.h"

namespace tmn {

namespace {

// Four floats as a GCC/Clang vector (SSE on x86-64, NEON on aarch64: both baseline, so this
// translation unit needs no ISA flags).
typedef float F4 __attribute__((vector_size(16)));

inline F4 load4(const float* p) {
  F4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, F4 v) { std::memcpy(p, &v, sizeof v); }

// dst[i * ld + j] = src_j[i] for a 4 x 4 block: rows j of W become columns of the panel.
inline void transpose4(const float* s0, const float* s1, const float* s2, const float* s3,
                       float* dst, int64_t ld) {
  const F4 r0 = load4(s0), r1 = load4(s1), r2 = load4(s2), r3 = load4(s3);
  const F4 t0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5);  // r0[0] r1[0] r0[1] r1[1]
  const F4 t1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
  const F4 t2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5);
  const F4 t3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
  store4(dst, __builtin_shufflevector(t0, t2, 0, 1, 4, 5));
  store4(dst + ld, __builtin_shufflevector(t0, t2, 2, 3, 6, 7));
  store4(dst + 2 * ld, __builtin_shufflevector(t1, t3, 0, 1, 4, 5));
  store4(dst + 3 * ld, __builtin_shufflevector(t1, t3, 2, 3, 6, 7));
}

}  // namespace

void pack_gemm_weights(const float* w, const float* bias, int32_t k, int32_t n, int32_t nr,
                       float* packed) {
  // A transpose, in 4 x 4 register blocks (5x faster than element by element: loading a model
  // packs up to 22 MB), walking 16 k at a time (one cache line of each source row) so both
  // the rows read and the panel rows written stay in L1.
  constexpr int32_t kb = 16;
  for (int32_t n0 = 0; n0 < n; n0 += nr) {
    const int32_t width = gemm_panel_width(n, nr, n0), cols = std::min(width, n - n0);
    for (int32_t j = 0; j < width; ++j) *packed++ = (bias && j < cols) ? bias[n0 + j] : 0.0f;
    const float* rows = w + static_cast<int64_t>(n0) * k;
    for (int32_t k0 = 0; k0 < k; k0 += kb) {
      const int32_t k1 = std::min(k, k0 + kb), k4 = k0 + (k1 - k0) / 4 * 4;
      float* dst = packed + static_cast<int64_t>(k0) * width;
      int32_t j = 0;
      for (; j + 4 <= cols; j += 4) {
        const float* src = rows + static_cast<int64_t>(j) * k;
        for (int32_t kk = k0; kk < k4; kk += 4)
          transpose4(src + kk, src + k + kk, src + 2 * k + kk, src + 3 * k + kk,
                     dst + (kk - k0) * width + j, width);
        for (int32_t jj = j; jj < j + 4; ++jj)
          for (int32_t kk = k4; kk < k1; ++kk)
            dst[(kk - k0) * width + jj] = rows[static_cast<int64_t>(jj) * k + kk];
      }
      for (; j < cols; ++j)
        for (int32_t kk = k0; kk < k1; ++kk)
          dst[(kk - k0) * width + j] = rows[static_cast<int64_t>(j) * k + kk];
      for (j = cols; j < width; ++j)
        for (int32_t kk = k0; kk < k1; ++kk) dst[(kk - k0) * width + j] = 0.0f;
    }
    packed += static_cast<int64_t>(k) * width;
  }
}

void unpack_gemm_weights(const float* packed, int32_t k, int32_t n, int32_t nr, int64_t first,
                         int64_t count, float* out) {
  const int64_t panel = (static_cast<int64_t>(k) + 1) * nr;  // every panel but the last
  for (int64_t i = first, end = first + count; i < end;) {
    const int32_t j = static_cast<int32_t>(i / k), n0 = j / nr * nr;
    const int32_t width = gemm_panel_width(n, nr, n0);
    const float* col = packed + (n0 / nr) * panel + width + (j - n0);  // W[j, 0]
    for (int64_t kk = i % k; kk < k && i < end; ++kk, ++i) *out++ = col[kk * width];
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

void gemv_q8_scalar(const GemvQ8Args& g) {
  for (int32_t j = g.row_begin; j < g.row_end; ++j) {
    const unsigned char* q = g.q + static_cast<int64_t>(j) * g.k;
    for (int64_t v = 0; v < g.vectors; ++v) {
      const float* x = g.x + v * g.ldx;
      float acc = 0.0f;
      for (int32_t kk = 0; kk < g.k; ++kk) {
        const float w = g.is_signed ? static_cast<float>(static_cast<signed char>(q[kk]))
                                    : static_cast<float>(q[kk]);
        acc += x[kk] * (w - g.zero[j]);
      }
      g.y[v * g.ldy + j] = apply_activation(acc * g.scale[j] + (g.bias ? g.bias[j] : 0.0f), g.act);
    }
  }
}

}  // namespace tmn
