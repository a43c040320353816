// Vectorised depthwise convolution (see DwconvArgs in kernels.h), shared by every vector ISA.
//
// NHWC keeps channels contiguous, so each output pixel is NV vectors of channels at a time:
// the accumulators start at the bias and take one FMA per in-bounds tap. The in-bounds tap
// range is computed once per output row (ky) and per output column (kx), so the inner loop
// has no bounds checks. The channel tail uses masked loads/stores (the packed weights are zero
// padded, so only activations and outputs need masks).
#pragma once

#include "kernels/vec.h"

namespace tmn {
namespace {

template <int NV>
inline void dwconv_pixel(const DwconvArgs& d, const float* in_origin, int32_t ky0, int32_t ky1,
                         int32_t kx0, int32_t kx1, float* out, const VecActivation& act) {
  constexpr int L = Vec::kLanes, CB = NV * L;
  const int64_t row_stride = static_cast<int64_t>(d.w) * d.in_ld;
  const int64_t block_floats = static_cast<int64_t>(CB) * (1 + d.kh * d.kw);
  const float* w = d.packed_w;
  int32_t c0 = 0;
  for (; c0 + CB <= d.c; c0 += CB, w += block_floats) {
    Vec acc[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[j] = Vec::load(w + j * L);
    for (int32_t ky = ky0; ky < ky1; ++ky) {
      const float* in_row = in_origin + ky * row_stride + c0;
      const float* w_row = w + (1 + ky * d.kw) * CB;
      for (int32_t kx = kx0; kx < kx1; ++kx) {
        const float* in = in_row + kx * d.in_ld;
        const float* wt = w_row + kx * CB;
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j)
          acc[j] = Vec::fmadd(Vec::load(in + j * L), Vec::load(wt + j * L), acc[j]);
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) Vec::store(out + c0 + j * L, act(acc[j]));
  }
  // Channel tail: one vector at a time, masked.
  for (; c0 < d.c; c0 += L) {
    const int32_t left = d.c - c0 < L ? d.c - c0 : L;
    const int32_t block = c0 / CB, lane0 = c0 % CB;
    const float* wb = d.packed_w + block * block_floats + lane0;
    Vec acc = Vec::load(wb);
    for (int32_t ky = ky0; ky < ky1; ++ky)
      for (int32_t kx = kx0; kx < kx1; ++kx) {
        const float* in = in_origin + ky * row_stride + kx * d.in_ld + c0;
        acc = Vec::fmadd(Vec::load_partial(in, left), Vec::load(wb + (1 + ky * d.kw + kx) * CB),
                         acc);
      }
    Vec::store_partial(out + c0, act(acc), left);
  }
}

template <int NV>
void dwconv_simd(const DwconvArgs& d) {
  const VecActivation act(d.act);
  for (int32_t oy = d.oy_begin; oy < d.oy_end; ++oy) {
    const int32_t iy0 = oy * d.sh - d.pad_top;
    const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
    const int32_t ky1 = d.h - iy0 < d.kh ? d.h - iy0 : d.kh;
    for (int32_t ox = 0; ox < d.out_w; ++ox) {
      const int32_t ix0 = ox * d.sw - d.pad_left;
      const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
      const int32_t kx1 = d.w - ix0 < d.kw ? d.w - ix0 : d.kw;
      // Address of input tap (ky, kx) = in_origin + ky * row_stride + kx * in_ld; only
      // in-bounds taps are dereferenced.
      const float* in_origin =
          d.in + (static_cast<int64_t>(iy0) * d.w + ix0) * d.in_ld;
      float* out = d.out + (static_cast<int64_t>(oy) * d.out_w + ox) * d.out_ld;
      dwconv_pixel<NV>(d, in_origin, ky0, ky1, kx0, kx1, out, act);
    }
  }
}

}  // namespace
}  // namespace tmn
