// Vectorised GEMM on packed weights (see GemmArgs in kernels.h), shared by every vector ISA.
//
// Register tile: R rows (pixels) x NV vectors of output channels. For every k the tile loads
// NV weight vectors once and broadcasts one A value per row, so the R*NV accumulators live in
// registers for the whole K loop. Full panels (NR = NV * lanes) use NV vectors; the half-width
// last panel (gemm_panel_width) uses NV / 2, so N = 16 on AVX-512 does not pay for 32 columns.
//
// Loop order: blocks of panels whose weights fit in L2 outer, then row tiles, then the
// panels of the block: a row tile of A (R x K) stays in L1 while the block's panels stream
// from L2 (short GEMMs: see gemm_simd).
//
// Row tiles are balanced: m rows are cut into ceil(m / MR) tiles of nearly equal height
// (49 = 10+10+10+10+9 with MR = 12) rather than full tiles plus a thin, latency-bound one;
// short GEMMs may use taller tiles (MRSmall, kSmallRows).
// Tiles with fewer than kChains accumulators split K over several accumulator sets so FMAs do
// not wait on each other (GEMV tiles of 1-2 rows: in contiguous parts, one weight stream each).
// The split depends on the panel width only, once a tile has 4 rows or more: then every row's
// sums are added in the same order whatever the tile heights, so a GEMM cut into row ranges
// anywhere (a thread pool's parts of >= 12 rows) gives the bits of one call.
//
// Bias is the first row of each panel; the epilogue adds the residual and applies the
// activation before the single store.
#pragma once

#include <algorithm>

#include "kernels/vec.h"

#define TMN_GEMM_INLINE inline __attribute__((always_inline))

namespace tmn {
namespace {

// Independent accumulator chains needed to hide FMA latency: 4 cycles x 2 FMAs per cycle
// (Zen4/Zen5 ymm, Zen5 zmm, Intel since Skylake).
constexpr int kChains = 8;
// Tiles of 1-2 rows (GEMV) only stream the weights: prefetch them this far ahead (16 KB; 4 KB
// made V1's classifier 1.05x slower on Zen 3).
constexpr int kWeightPrefetchFloats = 4096;
// Tiles of 3+ rows prefetch their panel this many floats ahead (0: not at all). Set per ISA by
// the including TU (TMN_GEMM_PANEL_PREFETCH).
#ifndef TMN_GEMM_PANEL_PREFETCH
#define TMN_GEMM_PANEL_PREFETCH 0
#endif
constexpr int kPanelPrefetchFloats = TMN_GEMM_PANEL_PREFETCH;
// GEMMs this short (8x8 pixels or fewer: V1's 7x7 layers, 49 rows) stream every panel once
// per row tile, so fewer, taller tiles (MRSmall) pay off there: 49 = 4 tiles of 13/12 rows
// instead of 5 of 10/9 reads the panels 20% less often.
constexpr int64_t kSmallRows = 64;

constexpr int k_splits(int chains) {
  return chains >= kChains ? 1 : (kChains + chains - 1) / chains;
}

// The activation with its kind fixed at compile time: the epilogue must not branch or call
// per vector (a call would also spill every accumulator, vector registers are caller-saved).
template <ActKind K>
TMN_GEMM_INLINE Vec activate(Vec x, const VecActivation& a) {
  if constexpr (K == ActKind::none) {
    return x;
  } else if constexpr (K == ActKind::relu6) {  // relu too: a.hi is +huge then
    return Vec::min(Vec::max(x, a.lo), a.hi);
  } else {
    const Vec gate = Vec::min(Vec::max(Vec::fmadd(x, a.alpha, a.beta), a.zero), a.one);
    return K == ActKind::hardswish ? Vec::mul(x, gate) : gate;
  }
}

// C = act(acc + residual) for R rows x `cols` (<= NV * lanes) columns.
template <ActKind K, int R, int NV>
TMN_GEMM_INLINE void store_tile_act(const Vec (&acc)[R][NV], float* c, int64_t ldc,
                                    const float* r, int64_t ldr, int32_t cols,
                                    const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  if (cols == NV * L) {  // every panel but maybe the last: no masks
    if (r) {
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j)
          Vec::store(c + i * ldc + j * L,
                     activate<K>(Vec::add(acc[i][j], Vec::load(r + i * ldr + j * L)), act));
    } else {
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) Vec::store(c + i * ldc + j * L, activate<K>(acc[i][j], act));
    }
    return;
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const int32_t left = cols - j * L;
      if (left <= 0) break;
      Vec v = acc[i][j];
      if (left >= L) {
        if (r) v = Vec::add(v, Vec::load(r + i * ldr + j * L));
        Vec::store(c + i * ldc + j * L, activate<K>(v, act));
      } else {
        if (r) v = Vec::add(v, Vec::load_partial(r + i * ldr + j * L, left));
        Vec::store_partial(c + i * ldc + j * L, activate<K>(v, act), left);
      }
    }
  }
}

// acc = C[R rows x `cols` (<= NV * lanes) columns].
template <int R, int NV>
TMN_GEMM_INLINE void load_tile(Vec (&acc)[R][NV], const float* c, int64_t ldc, int32_t cols) {
  constexpr int L = Vec::kLanes;
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const int32_t left = cols - j * L;
      acc[i][j] = left >= L ? Vec::load(c + i * ldc + j * L)
                            : left > 0 ? Vec::load_partial(c + i * ldc + j * L, left) : Vec::zero();
    }
}

template <int R, int NV>
TMN_GEMM_INLINE void store_tile(const Vec (&acc)[R][NV], const GemmArgs& g, int64_t row,
                                int32_t n0, const VecActivation& act) {
  constexpr int NR = NV * Vec::kLanes;
  float* c = g.c + row * g.ldc + n0;
  const float* r = g.residual ? g.residual + row * g.ldr + n0 : nullptr;
  const int32_t cols = g.n - n0 < NR ? g.n - n0 : NR;
  switch (act.kind) {  // once per tile
    case ActKind::none:
      return store_tile_act<ActKind::none>(acc, c, g.ldc, r, g.ldr, cols, act);
    case ActKind::relu:
    case ActKind::relu6:
      return store_tile_act<ActKind::relu6>(acc, c, g.ldc, r, g.ldr, cols, act);
    case ActKind::hardsigmoid:
      return store_tile_act<ActKind::hardsigmoid>(acc, c, g.ldc, r, g.ldr, cols, act);
    case ActKind::hardswish:
      return store_tile_act<ActKind::hardswish>(acc, c, g.ldc, r, g.ldr, cols, act);
  }
}

// One k step of one accumulator set: acc += A[the tile's rows, k] x the panel row at w
// (a_half: the tile's two row bases, see gemm_tile).
template <int R, int NV>
TMN_GEMM_INLINE void k_step(Vec (&acc)[R][NV], const float* w, const float* const (&a_half)[2],
                            int64_t lda, int64_t k) {
  constexpr int L = Vec::kLanes, H = (R + 1) / 2;
  Vec b[NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) b[j] = Vec::load(w + j * L);
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    const Vec ai = Vec::set1(a_half[i / H][(i % H) * lda + k]);
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = Vec::fmadd(ai, b[j], acc[i][j]);
  }
}

// C[row .. row+R, n0 .. n0 + NV*lanes) from one panel (bias row + K rows of NV*lanes floats).
template <int R, int NV>
TMN_GEMM_INLINE void gemm_tile(const GemmArgs& g, int64_t row, const float* panel, int32_t n0,
                               const VecActivation& act) {
  constexpr int L = Vec::kLanes, NR = NV * L, S = k_splits((R < 4 ? R : 4) * NV);
  // Rows are addressed as two halves from two bases sharing the same row offsets: a 12-row
  // tile then needs 5 offset registers instead of 11 (x86 has 15 usable GPRs).
  constexpr int H = (R + 1) / 2;
  const float* const a_half[2] = {g.a + row * g.lda, g.a + (row + H) * g.lda};
  Vec acc[S][R][NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const Vec b = Vec::load(panel + j * L);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      acc[0][i][j] = b;
#pragma GCC unroll 8
      for (int s = 1; s < S; ++s) acc[s][i][j] = Vec::zero();
    }
  }
  const float* w = panel + NR;
  int32_t kk = 0;
  if constexpr (S > 1 && R <= 2) {
    // GEMV: it only streams the weights (from L3 or DRAM), so the S accumulator sets take S
    // contiguous parts of K, S streams in flight at once (V1's classifier, 1024 -> 1001, 0.77x
    // the time of one stream interleaving k over the sets on Zen 3, with the 16 KB prefetch).
    const int32_t part = g.k / S;
    for (int32_t t = 0; t < part; ++t) {
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) {
        const float* ws = w + (static_cast<int64_t>(s) * part + t) * NR;
#pragma GCC unroll 8
        for (int q = 0; q < NR; q += 16) __builtin_prefetch(ws + kWeightPrefetchFloats + q);
        k_step<R, NV>(acc[s], ws, a_half, g.lda, s * part + t);
      }
    }
    kk = S * part;
    w += static_cast<int64_t>(S) * part * NR;
  } else if constexpr (S > 1) {  // S consecutive k go to S accumulator sets
    for (; kk + S <= g.k; kk += S, w += S * NR) {
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) k_step<R, NV>(acc[s], w + s * NR, a_half, g.lda, kk + s);
    }
  }
  for (; kk < g.k; ++kk, w += NR) {
    if constexpr (R > 2 && kPanelPrefetchFloats > 0) {  // the panel streams from L2
#pragma GCC unroll 8
      for (int q = 0; q < NR; q += 16) __builtin_prefetch(w + kPanelPrefetchFloats + q);
    }
    k_step<R, NV>(acc[0], w, a_half, g.lda, kk);
  }
#pragma GCC unroll 8
  for (int s = 1; s < S; ++s)
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[0][i][j] = Vec::add(acc[0][i][j], acc[s][i][j]);
  store_tile<R, NV>(acc[0], g, row, n0, act);
}

// gemm_tile with each row summed exactly as a one-row tile sums it (GemmArgs::gemv_order): the
// S accumulator sets of a one-row tile, each over its contiguous part of K (set 0 from the bias,
// and also over the k left after the parts), are added to set 0 in turn. Here the sets run
// one after the other, their running total kept in C between them.
template <int R, int NV>
TMN_GEMM_INLINE void gemm_tile_gemv_order(const GemmArgs& g, int64_t row, const float* panel,
                                          int32_t n0, const VecActivation& act) {
  constexpr int L = Vec::kLanes, NR = NV * L, S = k_splits(NV), H = (R + 1) / 2;
  const float* const a_half[2] = {g.a + row * g.lda, g.a + (row + H) * g.lda};
  float* c = g.c + row * g.ldc + n0;
  const int32_t cols = g.n - n0 < NR ? g.n - n0 : NR, part = g.k / S;
  for (int s = 0; s < S; ++s) {
    Vec acc[R][NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const Vec b = s == 0 ? Vec::load(panel + j * L) : Vec::zero();
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) acc[i][j] = b;
    }
    const float* w = panel + NR + static_cast<int64_t>(s) * part * NR;
    for (int32_t t = 0; t < part; ++t, w += NR) k_step<R, NV>(acc, w, a_half, g.lda, s * part + t);
    if (s == 0) {
      w = panel + NR + static_cast<int64_t>(S) * part * NR;
      for (int32_t kk = S * part; kk < g.k; ++kk, w += NR) k_step<R, NV>(acc, w, a_half, g.lda, kk);
    } else {
      Vec total[R][NV];
      load_tile<R, NV>(total, c, g.ldc, cols);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[i][j] = Vec::add(total[i][j], acc[i][j]);
    }
    if (s + 1 == S)
      store_tile<R, NV>(acc, g, row, n0, act);
    else
      store_tile_act<ActKind::none>(acc, c, g.ldc, nullptr, 0, cols, act);
  }
}

// Rows [row, row + R) against every panel. One out-of-line function per tile height (the
// tiles are inlined into it), called once per row tile.
template <int R, int NV>
__attribute__((noinline)) void gemm_rows(const GemmArgs& g, int64_t row, int32_t p0, int32_t p1,
                                         const VecActivation& act) {
  constexpr int NR = NV * Vec::kLanes;
  const int64_t panel_floats = (static_cast<int64_t>(g.k) + 1) * NR;
  for (int32_t p = p0; p < p1; ++p) {
    const int32_t n0 = p * NR;
    const float* panel = g.packed_w + p * panel_floats;
    const bool full = g.n - n0 > NR / 2;  // gemm_panel_width (not called: ISA TUs keep helpers local)
    if (R > 1 && g.gemv_order) {
      if (full)
        gemm_tile_gemv_order<R, NV>(g, row, panel, n0, act);
      else
        gemm_tile_gemv_order<R, NV / 2>(g, row, panel, n0, act);
    } else if (full) {
      gemm_tile<R, NV>(g, row, panel, n0, act);
    } else {
      gemm_tile<R, NV / 2>(g, row, panel, n0, act);
    }
  }
}

// Runtime tile height (1 .. R) to template instance.
template <int R, int NV>
inline void gemm_rows_n(const GemmArgs& g, int64_t row, int rows, int32_t p0, int32_t p1,
                        const VecActivation& act) {
  if (rows == R) return gemm_rows<R, NV>(g, row, p0, p1, act);
  if constexpr (R > 1) return gemm_rows_n<R - 1, NV>(g, row, rows, p0, p1, act);
}

// MR: tile height; MRSmall (>= MR): the height for GEMMs of at most kSmallRows rows.
template <int MR, int NV, int MRSmall = MR>
void gemm_simd(const GemmArgs& g) {
  static_assert(NV % 2 == 0, "the half-width last panel needs an even vector count");
  constexpr int NR = NV * Vec::kLanes;
  if (g.m <= 0 || g.n <= 0) return;
  const VecActivation act(g.act);
  const int32_t panels = (g.n + NR - 1) / NR;
  const bool small = MRSmall > MR && g.m <= kSmallRows;
  const int64_t tiles = small ? (g.m + MRSmall - 1) / MRSmall : (g.m + MR - 1) / MR;
  const int64_t base = g.m / tiles, extra = g.m % tiles;  // the first `extra` get base + 1 rows
  // Panels in blocks whose weights stay in L2 while every row tile passes over them: big
  // 1x1 layers (V1's 1024x1024: 4 MB) would otherwise stream all weights from L3 once per row
  // tile (a quarter of L2: V1 conv_pw_13 1.05 -> 0.80 ms with 512 KB blocks on a 2 MB-L2 Xeon).
  // Small layers are one block. GEMMs of <= kSmallRows rows reuse each panel in only a few row
  // tiles: ISAs with the registers for taller tiles there (MRSmall) read the panels less often
  // that way; the others walk panels outer (blocks of one panel), so each panel is fetched
  // once and stays in L1/L2 for all the row tiles while A (<= 64 rows) stays in L2 (AVX2, Zen 3:
  // V1's 7x7 layers conv_pw_12 / 13 0.95x the time of row tiles outer).
  const int64_t panel_bytes = (static_cast<int64_t>(g.k) + 1) * NR * sizeof(float);
  const bool panels_outer = MRSmall == MR && g.m <= kSmallRows;
  const int32_t block = panels_outer ? 1 :
      static_cast<int32_t>(std::max<int64_t>(1, gemm_weight_block_bytes() / panel_bytes));
  for (int32_t p0 = 0; p0 < panels; p0 += block) {
    const int32_t p1 = std::min(panels, p0 + block);
    int64_t row = 0;
    for (int64_t t = 0; t < tiles; ++t) {
      const int rows = static_cast<int>(base + (t < extra ? 1 : 0));
      if (small)
        gemm_rows_n<MRSmall, NV>(g, row, rows, p0, p1, act);
      else
        gemm_rows_n<MR, NV>(g, row, rows, p0, p1, act);
      row += rows;
    }
  }
}

// GEMV on 8-bit weights (GemvQ8Args in kernels.h). Each output is the dot product of x with
// one row of q. Rows of at most kGemvQ8ShortRow bytes are done R at a time interleaved (x
// loaded once for the R rows; the R rows are only a few cache lines), longer rows one after
// the other as one sequential stream: interleaving four (or two) 1 KB rows made V3-Small's
// last two layers 1.3-1.5x slower in the model on Zen 3, one stream 1.1x (against the panel
// layout this replaced, which had to be packed at load).
// The R sums are then reduced across lanes together and finished (scale, bias, activation) as
// one vector. The kernel only streams the weights: it prefetches them 16 KB ahead.
constexpr int32_t kGemvQ8ShortRow = 256;
constexpr int kGemvQ8Prefetch = 16384;

// R floats into lanes 0 .. R-1 (R = 4 without masks).
template <int R>
TMN_GEMM_INLINE Vec load_rows(const float* p) {
  if constexpr (R == 4) return Vec::load4(p);
  return Vec::load_partial(p, R);
}

// acc + x * (q[0 .. L) - zero): one vector of a row's dot product.
template <bool Signed>
TMN_GEMM_INLINE Vec q8_fmadd(Vec x, const unsigned char* q, Vec zero, Vec acc) {
  return Vec::fmadd(x, Vec::sub(Vec::load_q8<Signed>(q), zero), acc);
}

// sum over k in [from, to) of x[k] * (row[k] - zero): the scalar tail of a row.
template <bool Signed>
TMN_GEMM_INLINE float q8_dot_tail(const float* x, const unsigned char* row, int32_t from,
                                  int32_t to, float zero) {
  float sum = 0.0f;
  for (int32_t t = from; t < to; ++t)
    sum += x[t] * ((Signed ? static_cast<float>(static_cast<signed char>(row[t]))
                           : static_cast<float>(row[t])) - zero);
  return sum;
}

// y[j0 .. j0 + R) from the rows' partial sums (lanes) and the sums of their last k % L.
template <int R>
TMN_GEMM_INLINE void gemv_q8_finish(const GemvQ8Args& g, int32_t j0, const Vec (&sum)[R],
                                    const float (&tail)[R], bool has_tail,
                                    const VecActivation& act) {
  Vec s;
  if constexpr (R == 4)
    s = Vec::reduce_add4(sum[0], sum[1], sum[2], sum[3]);
  else
    s = Vec::set1(Vec::reduce_add(sum[0]));
  if (has_tail) s = Vec::add(s, load_rows<R>(tail));
  const Vec bias = g.bias ? load_rows<R>(g.bias + j0) : Vec::zero();
  const Vec y = act(Vec::fmadd(s, load_rows<R>(g.scale + j0), bias));
  if constexpr (R == 4)
    Vec::store4(g.y + j0, y);
  else
    Vec::store_partial(g.y + j0, y, R);
}

// Short rows: R rows interleaved, two accumulator sets each (2R FMA chains).
template <int R, bool Signed>
TMN_GEMM_INLINE void gemv_q8_short_rows(const GemvQ8Args& g, int32_t j0, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  const unsigned char* q[R];
  Vec zero[R], acc[2][R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    q[r] = g.q + static_cast<int64_t>(j0 + r) * g.k;
    zero[r] = Vec::set1(g.zero[j0 + r]);
    acc[0][r] = acc[1][r] = Vec::zero();
  }
  for (int64_t b = 0; b < static_cast<int64_t>(R) * g.k; b += 64)  // the group's lines, ahead
    __builtin_prefetch(q[0] + kGemvQ8Prefetch + b);
  int32_t kk = 0;
  for (; kk + 2 * L <= g.k; kk += 2 * L) {
    const Vec x0 = Vec::load(g.x + kk), x1 = Vec::load(g.x + kk + L);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      acc[0][r] = q8_fmadd<Signed>(x0, q[r] + kk, zero[r], acc[0][r]);
      acc[1][r] = q8_fmadd<Signed>(x1, q[r] + kk + L, zero[r], acc[1][r]);
    }
  }
  if (kk + L <= g.k) {
    const Vec x0 = Vec::load(g.x + kk);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      acc[0][r] = q8_fmadd<Signed>(x0, q[r] + kk, zero[r], acc[0][r]);
    kk += L;
  }
  Vec sum[R];
  float tail[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    sum[r] = Vec::add(acc[0][r], acc[1][r]);
    tail[r] = q8_dot_tail<Signed>(g.x, q[r], kk, g.k, g.zero[j0 + r]);
  }
  gemv_q8_finish<R>(g, j0, sum, tail, kk < g.k, act);
}

// Long rows: one after the other, four accumulators (four FMA chains) each.
template <int R, bool Signed>
TMN_GEMM_INLINE void gemv_q8_long_rows(const GemvQ8Args& g, int32_t j0, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  Vec sum[R];
  float tail[R];
  int32_t kk = 0;
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const unsigned char* row = g.q + static_cast<int64_t>(j0 + r) * g.k;
    const Vec zero = Vec::set1(g.zero[j0 + r]);
    Vec acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
    for (kk = 0; kk + 4 * L <= g.k; kk += 4 * L) {
      __builtin_prefetch(row + kk + kGemvQ8Prefetch);  // 4 * L <= 64 bytes: every line
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u)
        acc[u] = q8_fmadd<Signed>(Vec::load(g.x + kk + u * L), row + kk + u * L, zero, acc[u]);
    }
    for (int u = 0; kk + L <= g.k; kk += L, ++u)
      acc[u] = q8_fmadd<Signed>(Vec::load(g.x + kk), row + kk, zero, acc[u]);
    sum[r] = Vec::add(Vec::add(acc[0], acc[1]), Vec::add(acc[2], acc[3]));
    tail[r] = q8_dot_tail<Signed>(g.x, row, kk, g.k, g.zero[j0 + r]);
  }
  gemv_q8_finish<R>(g, j0, sum, tail, kk < g.k, act);
}

template <bool Signed>
void gemv_q8_range(const GemvQ8Args& g) {
  constexpr int R = 4;  // 8 accumulators + 4 zero points + 2 x vectors fit AVX2's 16 registers
  const VecActivation act(g.act);
  GemvQ8Args one = g;  // one input vector at a time, for each group of weight rows
  auto each_vector = [&](auto&& kernel) {
    for (int64_t v = 0; v < g.vectors; ++v) {
      one.x = g.x + v * g.ldx, one.y = g.y + v * g.ldy;
      kernel();
    }
  };
  int32_t j = g.row_begin;
  if (g.k <= kGemvQ8ShortRow) {
    for (; j + R <= g.row_end; j += R) each_vector([&] { gemv_q8_short_rows<R, Signed>(one, j, act); });
    for (; j < g.row_end; ++j) each_vector([&] { gemv_q8_short_rows<1, Signed>(one, j, act); });
  } else {
    for (; j + R <= g.row_end; j += R) each_vector([&] { gemv_q8_long_rows<R, Signed>(one, j, act); });
    for (; j < g.row_end; ++j) each_vector([&] { gemv_q8_long_rows<1, Signed>(one, j, act); });
  }
}

void gemv_q8_simd(const GemvQ8Args& g) {
  if (g.is_signed)
    gemv_q8_range<true>(g);
  else
    gemv_q8_range<false>(g);
}

}  // namespace
}  // namespace tmn

#undef TMN_GEMM_INLINE
