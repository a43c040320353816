// Scalar reference pooling.
#include <algorithm>
#include <limits>

#include "kernels/isa_kernels.h"

namespace tmn {

void pool_scalar(const PoolArgs& p) {
  for (int32_t oy = p.oy_begin; oy < p.oy_end; ++oy) {
    for (int32_t ox = 0; ox < p.out_w; ++ox) {
      const int32_t y0 = oy * p.sh - p.pad_top, x0 = ox * p.sw - p.pad_left;
      const int32_t ya = std::max(y0, 0), yb = std::min(y0 + p.kh, p.h);
      const int32_t xa = std::max(x0, 0), xb = std::min(x0 + p.kw, p.w);
      float* out = p.out + (static_cast<int64_t>(oy) * p.out_w + ox) * p.out_ld;
      const int32_t taps = std::max(0, yb - ya) * std::max(0, xb - xa);
      const float scale =
          1.0f / static_cast<float>(p.count_include_pad ? p.kh * p.kw : std::max(taps, 1));
      for (int32_t c = 0; c < p.c; ++c) {
        float acc = p.kind == PoolKind::max ? -std::numeric_limits<float>::infinity() : 0.0f;
        for (int32_t y = ya; y < yb; ++y)
          for (int32_t x = xa; x < xb; ++x) {
            const float v = p.in[(static_cast<int64_t>(y) * p.w + x) * p.in_ld + c];
            acc = p.kind == PoolKind::max ? std::max(acc, v) : acc + v;
          }
        out[c] = p.kind == PoolKind::max ? acc : acc * scale;
      }
    }
  }
}

void global_avg_pool_scalar(const float* in, int64_t pixels, int32_t channels, int64_t ld,
                            float* out) {
  for (int32_t c = 0; c < channels; ++c) out[c] = 0.0f;
  for (int64_t p = 0; p < pixels; ++p)
    for (int32_t c = 0; c < channels; ++c) out[c] += in[p * ld + c];
  const float scale = pixels > 0 ? 1.0f / static_cast<float>(pixels) : 0.0f;
  for (int32_t c = 0; c < channels; ++c) out[c] *= scale;
}

}  // namespace tmn
