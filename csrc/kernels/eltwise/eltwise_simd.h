// Vectorised elementwise kernels (see KernelTable in kernels.h), shared by every vector ISA.
#pragma once

#include "kernels/vec.h"

namespace tmn {
namespace {

inline void activation_simd(const float* x, float* y, int64_t count, const Activation& a) {
  constexpr int L = Vec::kLanes;
  const VecActivation act(a);
  int64_t i = 0;
  for (; i + L <= count; i += L) Vec::store(y + i, act(Vec::load(x + i)));
  if (i < count) {
    const int left = static_cast<int>(count - i);
    Vec::store_partial(y + i, act(Vec::load_partial(x + i, left)), left);
  }
}

inline void add_simd(const float* a, const float* b, float* y, int64_t count,
                     const Activation& activation) {
  constexpr int L = Vec::kLanes;
  const VecActivation act(activation);
  int64_t i = 0;
  for (; i + L <= count; i += L) Vec::store(y + i, act(Vec::add(Vec::load(a + i), Vec::load(b + i))));
  if (i < count) {
    const int left = static_cast<int>(count - i);
    const Vec s = Vec::add(Vec::load_partial(a + i, left), Vec::load_partial(b + i, left));
    Vec::store_partial(y + i, act(s), left);
  }
}

inline void mul_channels_simd(const float* x, const float* scale, float* y, int64_t pixels,
                              int32_t channels, int64_t ld) {
  constexpr int L = Vec::kLanes;
  for (int64_t p = 0; p < pixels; ++p) {
    const float* xp = x + p * ld;
    float* yp = y + p * ld;
    int32_t c = 0;
    for (; c + L <= channels; c += L)
      Vec::store(yp + c, Vec::mul(Vec::load(xp + c), Vec::load(scale + c)));
    if (c < channels) {
      const int left = channels - c;
      Vec::store_partial(yp + c, Vec::mul(Vec::load_partial(xp + c, left),
                                          Vec::load_partial(scale + c, left)), left);
    }
  }
}

}  // namespace
}  // namespace tmn
