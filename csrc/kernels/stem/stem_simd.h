// Vectorised stem convolution (see StemArgs in kernels.h), shared by every vector ISA.
//
// The layer is 3x3, stride 2, 3 input channels: each output pixel reads 27 input scalars and
// every one of them multiplies a vector of output channels. So, as a direct convolution (no
// im2col), a tile of T output pixels x NB channel vectors keeps T * NB accumulators in
// registers; for each of the 27 taps it loads the NB weight vectors once, then broadcasts the
// tap's input scalar of each pixel and FMAs it into that pixel's NB accumulators. Per tap that
// is NB + T loads for NB * T FMAs, so the big tiles are FMA bound. The packed channel block is
// one vector (CB == Vec::kLanes); NB = 2 tiles read two consecutive blocks.
//
// Channels go in passes of two vectors (NB = 2, T = TM2 pixels) and a last single vector if
// one is left (NB = 1, T = TM1: V3's 16 channels at AVX-512); the last vector of a pass may
// be partial (masked stores; weights are zero padded). Along an output row, tiles of TM
// pixels, then 8, 4, 2, 1 for the rest.
// Borders: out-of-image kernel rows are skipped (range computed per output row). A tile whose
// windows leave the image columns (the first and last of a row), or any tile if the input's
// pixel stride is not 3, first copies the few input columns it reads into a zero-padded
// buffer, so every tile runs the same branch-free code.
#pragma once

#include "kernels/vec.h"

namespace tmn {
namespace {

constexpr int kStemRowTaps = kStemK * kStemCin;                       // taps of one kernel row
constexpr int64_t kStemBlock = (1 + kStemK * kStemRowTaps) * Vec::kLanes;  // floats per block

struct StemRow {
  const float* in;     // input row iy0 + ky0, pixel 0
  const float* w;      // packed block of the pass's first channel vector
  float* out;          // output row, pixel 0, first channel of the pass
  int64_t row_stride, in_ld, out_ld;
  int32_t ky0, rows;   // in-image kernel rows: ky0 .. ky0 + rows
  int32_t w_in, pad_left;
  int32_t lanes;       // channels in the pass's last vector, 1 .. kLanes
};

// Hides where p points: tap (t, kx = 2) reads the same input as (t + 1, kx = 0), and GCC keeps
// such broadcasts alive from one tap to a later one, spilling accumulators to make room.
inline void stem_hide(const float*& p) { __asm__ volatile("" : "+r"(p)); }

template <int NB>
__attribute__((always_inline)) inline void stem_store(const StemRow& r, float* out,
                                                      const Vec* acc, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) {
    const Vec y = act(acc[b]);
    if (b < NB - 1 || r.lanes == L)
      Vec::store(out + b * L, y);
    else
      Vec::store_partial(out + b * L, y, r.lanes);
  }
}

// T output pixels at out, NB channel vectors. in: the tile's first input column in kernel row
// ky0, pixel stride 3 (the tap loads below are at compile-time offsets), row_stride floats
// between kernel rows; every column the tile reads is there (in the image or zero padding).
template <int NB, int T>
__attribute__((noinline)) void stem_tile(const StemRow& r, const float* in, int64_t row_stride,
                                         float* out, const VecActivation& act) {
  constexpr int L = Vec::kLanes;
  Vec acc[T][NB];
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) {
    const Vec bias = Vec::load(r.w + b * kStemBlock);
#pragma GCC unroll 32
    for (int t = 0; t < T; ++t) acc[t][b] = bias;
  }
  const float* taps = r.w + L + r.ky0 * kStemRowTaps * L;
  for (int32_t ky = 0; ky < r.rows; ++ky, in += row_stride, taps += kStemRowTaps * L) {
#pragma GCC unroll 9
    for (int j = 0; j < kStemRowTaps; ++j) {  // j = kx * 3 + ci
      const int kx = j / kStemCin, ci = j % kStemCin;
      Vec w[NB];
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) w[b] = Vec::load(taps + j * L + b * kStemBlock);
      const float* px = in;
      stem_hide(px);
#pragma GCC unroll 32
      for (int t = 0; t < T; ++t) {
        const Vec x = Vec::set1(px[(t * kStemStride + kx) * kStemCin + ci]);
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) acc[t][b] = Vec::fmadd(x, w[b], acc[t][b]);
      }
    }
  }
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t) stem_store<NB>(r, out + t * r.out_ld, acc[t], act);
}

// Output pixels [ox, ox + T). direct: their windows lie inside the image columns and the input
// pixel stride is 3, so the tile reads the image itself; otherwise the columns it needs are
// first copied, zero padded, into a small buffer (the border tiles of each row).
template <int NB, int T>
void stem_tile_at(const StemRow& r, int32_t ox, bool direct, const VecActivation& act) {
  constexpr int NI = (T - 1) * kStemStride + kStemK;  // input columns of the tile
  const int32_t ix0 = ox * kStemStride - r.pad_left;
  float* out = r.out + ox * r.out_ld;
  if (direct) {
    stem_tile<NB, T>(r, r.in + static_cast<int64_t>(ix0) * kStemCin, r.row_stride, out, act);
    return;
  }
  float buf[kStemK * NI * kStemCin];
  const float* row = r.in;
  for (int32_t ky = 0; ky < r.rows; ++ky, row += r.row_stride)
    for (int32_t i = 0; i < NI; ++i) {
      const int32_t ix = ix0 + i;
      const bool inside = ix >= 0 && ix < r.w_in;
      for (int32_t ci = 0; ci < kStemCin; ++ci)
        buf[(ky * NI + i) * kStemCin + ci] = inside ? row[ix * r.in_ld + ci] : 0.0f;
    }
  stem_tile<NB, T>(r, buf, NI * kStemCin, out, act);
}

// One output row for the pass of NB channel vectors at r.w / r.out: tiles of TM pixels, then
// of the next smaller power of two, down to 1.
template <int NB, int T>
void stem_tiles(const StemRow& r, int32_t ox, int32_t out_w, int32_t ox_lo, int32_t ox_hi,
                const VecActivation& act) {
  for (; ox + T <= out_w; ox += T) stem_tile_at<NB, T>(r, ox, ox >= ox_lo && ox + T <= ox_hi, act);
  if constexpr (T > 1) {
    constexpr int next = T > 8 ? 8 : T > 4 ? 4 : T > 2 ? 2 : 1;
    if (ox < out_w) stem_tiles<NB, next>(r, ox, out_w, ox_lo, ox_hi, act);
  }
}

template <int NB, int TM>
void stem_pass(const StemRow& r, int32_t out_w, const VecActivation& act) {
  // Pixels [ox_lo, ox_hi) read only in-image columns (none if the input is strided).
  const int32_t ox_lo = (r.pad_left + kStemStride - 1) / kStemStride;
  const int32_t last = r.w_in - kStemK + r.pad_left;  // ox * stride <= last for those
  const int32_t ox_hi = last < 0 || r.in_ld != kStemCin ? 0 : last / kStemStride + 1;
  stem_tiles<NB, TM>(r, 0, out_w, ox_lo, ox_hi, act);
}

// TM1 / TM2: widest tiles of one / two channel vectors (bounded by the register file).
template <int TM1, int TM2>
void stem_simd(const StemArgs& d) {
  constexpr int L = Vec::kLanes;
  const VecActivation act(d.act);
  StemRow r;
  r.row_stride = static_cast<int64_t>(d.w) * d.in_ld;
  r.in_ld = d.in_ld;
  r.out_ld = d.out_ld;
  r.w_in = d.w;
  r.pad_left = d.pad_left;
  for (int32_t oy = d.oy_begin; oy < d.oy_end; ++oy) {
    const int32_t iy0 = oy * kStemStride - d.pad_top;
    const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
    const int32_t ky1 = d.h - iy0 < kStemK ? d.h - iy0 : kStemK;
    r.ky0 = ky0;
    r.rows = ky1 > ky0 ? ky1 - ky0 : 0;
    r.in = d.in + (r.rows ? static_cast<int64_t>(iy0 + ky0) * r.row_stride : 0);
    float* out_row = d.out + static_cast<int64_t>(oy) * d.out_w * d.out_ld;
    for (int32_t c0 = 0; c0 < d.cout;) {
      const int32_t left = d.cout - c0;
      r.w = d.packed_w + (c0 / L) * kStemBlock;
      r.out = out_row + c0;
      if (left > L) {
        r.lanes = left - L < L ? left - L : L;
        stem_pass<2, TM2>(r, d.out_w, act);
        c0 += 2 * L;
      } else {
        r.lanes = left;
        stem_pass<1, TM1>(r, d.out_w, act);
        c0 += L;
      }
    }
  }
}

}  // namespace
}  // namespace tmn
