// Vectorised depthwise convolution (see DwconvArgs in kernels.h), shared by every vector ISA.
//
// NHWC keeps channels contiguous, so the kernels work on one vector of channels at a time and
// the packed channel block is one vector (CB == Vec::kLanes): bias and taps of a channel vector
// are contiguous.
//
// Work order: output row, then tiles of up to TM output pixels along the row, then channel
// vectors. A tile walks its input columns channel vector by channel vector, i.e. through
// contiguous memory, which the hardware prefetchers follow well even when a pixel is many cache
// lines long (measured faster than channel-vector-outer orders, with or without L1 blocking).
//
// A tile keeps T accumulators (starting at the bias) in registers. For each in-image kernel
// row it loads the KW weights of that row, then walks the (T - 1) * SW + KW input pixels the
// tile needs, loading each once and FMA-ing it into every accumulator whose window covers it:
// an input vector is loaded once per kernel row instead of once per tap, which keeps the k3
// tiles FMA-bound rather than load-bound. KW, SW and T are template parameters, so the loops
// unroll completely and which (pixel, tap) pairs meet is decided at compile time. A row is split
// into tiles of near-equal width <= TM (TM = 16 with 32 vector registers, 8 with 16).
//
// Borders: out-of-image kernel rows are skipped (the ky range is computed once per output row).
// Tiles that lie inside the image columns run branch-free; the few that touch the left/right
// border are the Edge instantiation, which skips out-of-image input columns (one predictable
// branch per input column, no wasted FMAs). Any padding works, symmetric or not.
// Channel tail (C not a multiple of the vector width): masked loads and stores (packed weights
// are zero padded, so only activations and outputs need masks); see kMaskedOnly.
//
// Kernel widths 3 and 5 and column strides 1 and 2 (MobileNet's) get these tiles; any other
// width or stride takes the generic per-pixel path. Kernel height and row stride are runtime
// values everywhere.
// Dilation (DwconvArgs::dil_h / dil_w): kernel rows are dil_h input rows apart; a column
// dilation splits the output columns into residue classes that are plain convs (dwconv_simd).
#pragma once

#include <algorithm>

#include "kernels/vec.h"

namespace tmn {
namespace {

// One output row's worth of geometry.
struct DwRow {
  const float* in;      // input row iy0 + ky0, pixel 0, channel 0
  const float* taps;    // packed weights: tap (ky0, 0) of channel vector 0
  const float* bias;    // packed weights: bias of channel vector 0
  float* out;           // output row oy, pixel 0, channel 0
  int64_t row_stride;   // floats between input rows
  int64_t in_ld, out_ld;
  int64_t wstep;        // floats between the packed blocks of consecutive channel vectors
  int32_t rows;         // in-image kernel rows: ky0 .. ky0 + rows
  int32_t w, pad_left, c, out_w;
  int32_t kw, sw;       // generic path only
};

// An empty asm that claims to modify v: the compiler must keep the loaded vector in a register
// instead of folding the load into each FMA that uses it (which re-loads it up to KW times and
// makes the small-kernel tiles load-port bound).
inline void keep_in_register(Vec& v) {
#if defined(__AVX512F__)
  __asm__("" : "+v"(v.v));
#elif defined(__AVX2__)
  __asm__("" : "+x"(v.v));
#elif defined(__aarch64__)
  __asm__("" : "+w"(v.v));
#endif
}

// AVX-512 masked loads/stores cost the same as plain ones, so there every channel vector takes
// the masked path (one copy of each tile instead of two); elsewhere only the tail vector does.
#if defined(__AVX512F__)
constexpr bool kMaskedOnly = true;
#else
constexpr bool kMaskedOnly = false;
#endif

template <bool Tail>
inline Vec load_ch(const float* p, int32_t lanes) {
  return Tail ? Vec::load_partial(p, lanes) : Vec::load(p);
}

template <bool Tail>
inline void store_ch(float* p, Vec v, int32_t lanes) {
  if (Tail)
    Vec::store_partial(p, v, lanes);
  else
    Vec::store(p, v);
}

// act applied to T accumulators: one switch, then straight-line code (VecActivation's own
// operator() would switch per vector).
template <int T>
__attribute__((always_inline)) inline void activate_all(Vec* acc, const VecActivation& act) {
  switch (act.kind) {
    case ActKind::none: break;
    case ActKind::relu:
    case ActKind::relu6: {
      const Vec lo = act.lo, hi = act.hi;
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[t] = Vec::min(Vec::max(acc[t], lo), hi);
      break;
    }
    case ActKind::hardsigmoid: {
      const Vec alpha = act.alpha, beta = act.beta, zero = act.zero, one = act.one;
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
        acc[t] = Vec::min(Vec::max(Vec::fmadd(acc[t], alpha, beta), zero), one);
      break;
    }
    case ActKind::hardswish: {
      const Vec alpha = act.alpha, beta = act.beta, zero = act.zero, one = act.one;
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
        acc[t] = Vec::mul(acc[t], Vec::min(Vec::max(Vec::fmadd(acc[t], alpha, beta), zero), one));
      break;
    }
  }
}

// T output pixels of one channel vector. in: input row ky0 at this channel offset; ix0 * in_ld
// is the offset of the tile's first input column; valid: bit i set if input column i is in the
// image (Edge only).
template <int KW, int SW, int T, bool Edge, bool Tail>
__attribute__((always_inline)) inline void dw_tile_vec(const DwRow& r, const float* in,
                                                       int64_t col0, uint64_t valid,
                                                       const float* bias, const float* taps,
                                                       float* out, int32_t lanes,
                                                       const VecActivation& act) {
  constexpr int L = Vec::kLanes, NI = (T - 1) * SW + KW;  // NI: input columns the tile reads
  Vec acc[T];
  const Vec b = Vec::load(bias);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) acc[t] = b;
  for (int32_t ky = 0; ky < r.rows; ++ky, in += r.row_stride, taps += KW * L) {
    Vec wk[KW];
#pragma GCC unroll 8
    for (int kx = 0; kx < KW; ++kx) wk[kx] = Vec::load(taps + kx * L);
    int64_t col = col0;
#pragma GCC unroll 40
    for (int i = 0; i < NI; ++i, col += r.in_ld) {
      if (Edge && !((valid >> i) & 1u)) continue;
      Vec x = load_ch<Tail>(in + col, lanes);
      keep_in_register(x);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const int kx = i - t * SW;  // compile-time after unrolling
        if (kx >= 0 && kx < KW) acc[t] = Vec::fmadd(x, wk[kx], acc[t]);
      }
    }
  }
  activate_all<T>(acc, act);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) store_ch<Tail>(out + t * r.out_ld, acc[t], lanes);
}

// Output pixels [ox, ox + T) of one row, all channels.
template <int KW, int SW, int T, bool Edge>
void dw_tile(const DwRow& r, int32_t ox, const VecActivation& act) {
  constexpr int L = Vec::kLanes, NI = (T - 1) * SW + KW;
  static_assert(NI <= 64, "valid-column mask is 64 bits");
  const int32_t ix0 = ox * SW - r.pad_left;
  uint64_t valid = 0;
  if (Edge) {
#pragma GCC unroll 40
    for (int i = 0; i < NI; ++i)
      valid |= static_cast<uint64_t>(static_cast<uint32_t>(ix0 + i) < static_cast<uint32_t>(r.w)) << i;
  }
  const int64_t col0 = static_cast<int64_t>(ix0) * r.in_ld;
  float* out = r.out + ox * r.out_ld;
  const float* bias = r.bias;
  const float* taps = r.taps;
  if constexpr (kMaskedOnly) {
    for (int32_t c0 = 0; c0 < r.c; c0 += L, bias += r.wstep, taps += r.wstep)
      dw_tile_vec<KW, SW, T, Edge, true>(r, r.in + c0, col0, valid, bias, taps, out + c0,
                                         r.c - c0 < L ? r.c - c0 : L, act);
  } else {  // full vectors only: dw_row sends a channel tail down the generic path
    for (int32_t c0 = 0; c0 + L <= r.c; c0 += L, bias += r.wstep, taps += r.wstep)
      dw_tile_vec<KW, SW, T, Edge, false>(r, r.in + c0, col0, valid, bias, taps, out + c0, L,
                                          act);
  }
}

template <int KW, int SW, int T>
inline void dw_tile_any(const DwRow& r, int32_t ox, bool edge, const VecActivation& act) {
  if (edge)
    dw_tile<KW, SW, T, true>(r, ox, act);
  else
    dw_tile<KW, SW, T, false>(r, ox, act);
}

// Runs the tile of n (1 .. TM) pixels at ox.
template <int KW, int SW, int TM>
inline void dw_tile_n(const DwRow& r, int32_t ox, int32_t n, bool edge, const VecActivation& act) {
  static_assert(TM <= 16, "extend the switch");
  switch (n) {
#define TMN_DW_TILE(k)                                                       \
  case k:                                                                    \
    if (k <= TM) dw_tile_any<KW, SW, (k <= TM ? k : 1)>(r, ox, edge, act);   \
    break;
    TMN_DW_TILE(1) TMN_DW_TILE(2) TMN_DW_TILE(3) TMN_DW_TILE(4) TMN_DW_TILE(5) TMN_DW_TILE(6)
    TMN_DW_TILE(7) TMN_DW_TILE(8) TMN_DW_TILE(9) TMN_DW_TILE(10) TMN_DW_TILE(11) TMN_DW_TILE(12)
    TMN_DW_TILE(13) TMN_DW_TILE(14) TMN_DW_TILE(15) TMN_DW_TILE(16)
#undef TMN_DW_TILE
    default: break;
  }
}

// Generic path (any kernel width, any column stride; also channel tails without cheap masks):
// one pixel at a time, taps clipped.
template <bool Tail>
void dw_row_generic_vec(const DwRow& r, const float* in, const float* bias, const float* taps,
                        float* out, int32_t lanes, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  for (int32_t ox = 0; ox < r.out_w; ++ox) {
    const int32_t ix0 = ox * r.sw - r.pad_left;
    const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
    const int32_t kx1 = r.w - ix0 < r.kw ? r.w - ix0 : r.kw;
    Vec acc = Vec::load(bias);
    for (int32_t ky = 0; ky < r.rows; ++ky) {
      const float* row = in + ky * r.row_stride;
      const float* wrow = taps + ky * r.kw * L;
      for (int32_t kx = kx0; kx < kx1; ++kx)
        acc = Vec::fmadd(load_ch<Tail>(row + (ix0 + kx) * r.in_ld, lanes),
                         Vec::load(wrow + kx * L), acc);
    }
    store_ch<Tail>(out + ox * r.out_ld, act(acc), lanes);
  }
}

// A whole output row, split into ceil(out_w / TM) tiles of near-equal width (e.g. 28 pixels
// as 14 + 14 rather than 16 + 12: a short last tile wastes its share of loads and overhead).
template <int KW, int SW, int TM>
void dw_row(const DwRow& r, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  // Tiles inside [ox_lo, ox_hi) read only in-image columns.
  const int32_t ox_lo = (r.pad_left + SW - 1) / SW;
  const int32_t last = r.w - KW + r.pad_left;  // ox * SW <= last for an interior pixel
  const int32_t ox_hi = last < 0 ? 0 : last / SW + 1;
  const int32_t tiles = (r.out_w + TM - 1) / TM;
  const int32_t base = r.out_w / tiles, wider = r.out_w % tiles;  // `wider` tiles get base + 1
  int32_t ox = 0;
  for (int32_t i = 0; i < tiles; ++i) {
    const int32_t n = base + (i < wider);
    dw_tile_n<KW, SW, TM>(r, ox, n, ox < ox_lo || ox + n > ox_hi, act);
    ox += n;
  }
  // Without cheap masks a channel tail would double the tile code; it is rare (MobileNet widths
  // are multiples of 8), so it takes the generic path.
  const int32_t c0 = r.c - r.c % L;
  if (!kMaskedOnly && c0 < r.c)
    dw_row_generic_vec<true>(r, r.in + c0, r.bias + (c0 / L) * r.wstep,
                             r.taps + (c0 / L) * r.wstep, r.out + c0, r.c - c0, act);
}

// Generic path for a whole row.
void dw_row_generic(const DwRow& r, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  int32_t c0 = 0;
  const float* bias = r.bias;
  const float* taps = r.taps;
  for (; c0 + L <= r.c; c0 += L, bias += r.wstep, taps += r.wstep)
    dw_row_generic_vec<false>(r, r.in + c0, bias, taps, r.out + c0, L, act);
  if (c0 < r.c) dw_row_generic_vec<true>(r, r.in + c0, bias, taps, r.out + c0, r.c - c0, act);
}

// TM: widest tile (bounded by the register file: TM accumulators + KW weights + 1 input).
template <int TM>
void dwconv_simd(const DwconvArgs& d) {
  constexpr int L = Vec::kLanes;
  void (*row_fn)(const DwRow&, const VecActivation&) = dw_row_generic;
  if (d.kw == 3 && d.sw == 1) row_fn = dw_row<3, 1, TM>;
  if (d.kw == 3 && d.sw == 2) row_fn = dw_row<3, 2, TM>;
  if (d.kw == 5 && d.sw == 1) row_fn = dw_row<5, 1, TM>;
  if (d.kw == 5 && d.sw == 2) row_fn = dw_row<5, 2, TM>;

  const VecActivation act(d.act);
  DwRow r;
  r.row_stride = static_cast<int64_t>(d.dil_h) * d.w * d.in_ld;  // between kernel rows
  r.wstep = static_cast<int64_t>(L) * (1 + d.kh * d.kw);
  r.kw = d.kw;
  r.sw = d.sw;
  // Column dilation D (stride 1 only, see Conv2d): output columns ox = cls + D * j read input
  // columns of one residue mod D only, so each class is an undilated conv over every D-th
  // column (pixel steps in_ld * D / out_ld * D), which the tiles above run as they are.
  const int32_t dil = d.dil_w;
  r.c = d.c;
  r.bias = d.packed_w;
  for (int32_t oy = d.oy_begin; oy < d.oy_end; ++oy) {
    const int32_t iy0 = oy * d.sh - d.pad_top;  // in-image kernel rows: [ky0, ky1)
    const int32_t ky0 = iy0 < 0 ? (-iy0 + d.dil_h - 1) / d.dil_h : 0;
    const int32_t ky1 = iy0 >= d.h ? 0 : std::min(d.kh, (d.h - 1 - iy0) / d.dil_h + 1);
    r.rows = ky1 > ky0 ? ky1 - ky0 : 0;
    const float* in =
        d.in + (r.rows ? static_cast<int64_t>(iy0 + ky0 * d.dil_h) * d.w * d.in_ld : 0);
    r.taps = d.packed_w + (1 + static_cast<int64_t>(ky0) * d.kw) * L;
    float* out = d.out + static_cast<int64_t>(oy) * d.out_w * d.out_ld;
    for (int32_t cls = 0; cls < dil && cls < d.out_w; ++cls) {
      const int32_t base = cls - d.pad_left;  // input column of tap 0 of ox = cls
      const int32_t q = base >= 0 ? base / dil : -((-base + dil - 1) / dil);
      const int32_t first = base - q * dil;   // its residue, in [0, dil)
      r.in = in + static_cast<int64_t>(first) * d.in_ld;
      r.in_ld = d.in_ld * dil;
      r.w = first < d.w ? (d.w - first + dil - 1) / dil : 0;
      r.pad_left = -q;
      r.out = out + static_cast<int64_t>(cls) * d.out_ld;
      r.out_ld = d.out_ld * dil;
      r.out_w = (d.out_w - cls + dil - 1) / dil;
      row_fn(r, act);
    }
  }
}

}  // namespace
}  // namespace tmn
