// Vectorised pooling (see PoolArgs in kernels.h), shared by every vector ISA: one vector of
// channels at a time, taps clipped to the image once per output pixel.
#pragma once

#include "kernels/vec.h"

namespace tmn {
namespace {

inline Vec pool_load(const float* p, int32_t left) {
  return left >= Vec::kLanes ? Vec::load(p) : Vec::load_partial(p, left);
}

inline void pool_simd(const PoolArgs& p) {
  constexpr int L = Vec::kLanes;
  const bool is_max = p.kind == PoolKind::max;
  for (int32_t oy = p.oy_begin; oy < p.oy_end; ++oy) {
    for (int32_t ox = 0; ox < p.out_w; ++ox) {
      const int32_t y0 = oy * p.sh - p.pad_top, x0 = ox * p.sw - p.pad_left;
      const int32_t ya = y0 > 0 ? y0 : 0, yb = y0 + p.kh < p.h ? y0 + p.kh : p.h;
      const int32_t xa = x0 > 0 ? x0 : 0, xb = x0 + p.kw < p.w ? x0 + p.kw : p.w;
      const int32_t taps = (yb > ya ? yb - ya : 0) * (xb > xa ? xb - xa : 0);
      const int32_t divisor = p.count_include_pad ? p.kh * p.kw : (taps > 0 ? taps : 1);
      const Vec scale = Vec::set1(1.0f / static_cast<float>(divisor));
      float* out = p.out + (static_cast<int64_t>(oy) * p.out_w + ox) * p.out_ld;
      for (int32_t c0 = 0; c0 < p.c; c0 += L) {
        const int32_t left = p.c - c0;
        Vec acc = Vec::set1(is_max ? -__builtin_inff() : 0.0f);
        for (int32_t y = ya; y < yb; ++y)
          for (int32_t x = xa; x < xb; ++x) {
            const Vec v = pool_load(p.in + (static_cast<int64_t>(y) * p.w + x) * p.in_ld + c0, left);
            acc = is_max ? Vec::max(v, acc) : Vec::add(acc, v);
          }
        if (!is_max) acc = Vec::mul(acc, scale);
        if (left >= L) Vec::store(out + c0, acc);
        else Vec::store_partial(out + c0, acc, left);
      }
    }
  }
}

inline void global_avg_pool_simd(const float* in, int64_t pixels, int32_t channels, int64_t ld,
                                 float* out) {
  constexpr int L = Vec::kLanes, NV = 4;  // 4 independent accumulators hide FMA latency
  const Vec scale = Vec::set1(pixels > 0 ? 1.0f / static_cast<float>(pixels) : 0.0f);
  int32_t c0 = 0;
  for (; c0 + NV * L <= channels; c0 += NV * L) {
    Vec acc[NV];
    for (int j = 0; j < NV; ++j) acc[j] = Vec::zero();
    for (int64_t p = 0; p < pixels; ++p)
      for (int j = 0; j < NV; ++j) acc[j] = Vec::add(acc[j], Vec::load(in + p * ld + c0 + j * L));
    for (int j = 0; j < NV; ++j) Vec::store(out + c0 + j * L, Vec::mul(acc[j], scale));
  }
  for (; c0 < channels; c0 += L) {
    const int32_t left = channels - c0;
    Vec acc = Vec::zero();
    for (int64_t p = 0; p < pixels; ++p) acc = Vec::add(acc, pool_load(in + p * ld + c0, left));
    acc = Vec::mul(acc, scale);
    if (left >= L) Vec::store(out + c0, acc);
    else Vec::store_partial(out + c0, acc, left);
  }
}

}  // namespace
}  // namespace tmn
