// Vectorised GEMM on packed weights (see GemmArgs in kernels.h), shared by every vector ISA.
//
// Register tile: MR rows (pixels) x NV vectors of output channels (NR = NV * lanes, the packed
// panel width). For every k the tile loads NV weight vectors once and broadcasts one A value
// per row, so MR*NV accumulators live in registers for the whole K loop. Loop order: row tiles
// outer, panels inner, so a row tile of A stays in L1 while every panel streams from L2.
// Bias is the first row of each panel; the epilogue adds the residual and applies the
// activation before the single store.
#pragma once

#include "kernels/vec.h"

namespace tmn {
namespace {

template <int MR, int NV>
inline void gemm_tile(const GemmArgs& g, int64_t row, const float* panel, int32_t n0,
                      const VecActivation& act) {
  constexpr int L = Vec::kLanes, NR = NV * L;
  Vec acc[MR][NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const Vec b = Vec::load(panel + j * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) acc[i][j] = b;
  }
  const float* a = g.a + row * g.lda;
  const float* w = panel + NR;
  for (int32_t kk = 0; kk < g.k; ++kk, w += NR) {
    Vec b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) b[j] = Vec::load(w + j * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const Vec ai = Vec::set1(a[i * g.lda + kk]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = Vec::fmadd(ai, b[j], acc[i][j]);
    }
  }
  const int32_t cols = g.n - n0 < NR ? g.n - n0 : NR;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    float* c = g.c + (row + i) * g.ldc + n0;
    const float* r = g.residual ? g.residual + (row + i) * g.ldr + n0 : nullptr;
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const int32_t left = cols - j * L;
      if (left <= 0) break;
      Vec v = acc[i][j];
      if (left >= L) {
        if (r) v = Vec::add(v, Vec::load(r + j * L));
        Vec::store(c + j * L, act(v));
      } else {
        if (r) v = Vec::add(v, Vec::load_partial(r + j * L, left));
        Vec::store_partial(c + j * L, act(v), left);
      }
    }
  }
}

// Rows [row, row + MR) against every panel.
template <int MR, int NV>
inline void gemm_rows(const GemmArgs& g, int64_t row, const VecActivation& act) {
  constexpr int NR = NV * Vec::kLanes;
  const int64_t panel_floats = (static_cast<int64_t>(g.k) + 1) * NR;
  const float* panel = g.packed_w;
  for (int32_t n0 = 0; n0 < g.n; n0 += NR, panel += panel_floats)
    gemm_tile<MR, NV>(g, row, panel, n0, act);
}

// The last m % MR rows, with a tile of exactly that height.
template <int MR, int NV>
inline void gemm_remainder(const GemmArgs& g, int64_t row, int rows, const VecActivation& act) {
  if constexpr (MR > 1) {
    if (rows == MR - 1) return gemm_rows<MR - 1, NV>(g, row, act);
    return gemm_remainder<MR - 1, NV>(g, row, rows, act);
  }
}

template <int MR, int NV>
void gemm_simd(const GemmArgs& g) {
  const VecActivation act(g.act);
  int64_t row = 0;
  for (; row + MR <= g.m; row += MR) gemm_rows<MR, NV>(g, row, act);
  if (row < g.m) gemm_remainder<MR, NV>(g, row, static_cast<int>(g.m - row), act);
}

}  // namespace
}  // namespace tmn
