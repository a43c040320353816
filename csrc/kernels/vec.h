// A thin SIMD vector type for the vectorised kernels. Which ISA it wraps is decided by the
// flags of the translation unit that includes it (kernels/<op>/avx512.cc is compiled with
// -mavx512f..., avx2.cc with -mavx2 -mfma, neon.cc on aarch64), so one kernel template serves
// every ISA.
//
// Everything here and in the *_simd.h kernel templates lives in an anonymous namespace: each
// ISA's copy gets internal linkage and the linker can never hand an AVX-512 copy of a helper
// to code running on an AVX2-only CPU. For the same reason the per-ISA translation units avoid
// the STL (whose out-of-line template instances would be shared across TUs).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#else
#error "vec.h is only for the vector ISAs (compile with -mavx2 -mfma, -mavx512f, or on aarch64)"
#endif

namespace tmn {
namespace {

#if defined(__AVX512F__)

struct Vec {
  static constexpr int kLanes = 16;
  __m512 v;
  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  // n in [0, kLanes]: lanes >= n read as 0 / are not written.
  static Vec load_partial(const float* p, int n) { return {_mm512_maskz_loadu_ps(mask(n), p)}; }
  static void store_partial(float* p, Vec a, int n) { _mm512_mask_storeu_ps(p, mask(n), a.v); }
  // Lanes 0-3 only (no masks): load4's other lanes are unspecified, store4 writes 4 floats.
  static Vec load4(const float* p) { return {_mm512_castps128_ps512(_mm_loadu_ps(p))}; }
  static void store4(float* p, Vec a) { _mm_storeu_ps(p, _mm512_castps512_ps128(a.v)); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  static Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  static Vec sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  // kLanes 8-bit integers (int8 if Signed, else uint8) as floats.
  template <bool Signed>
  static Vec load_q8(const unsigned char* p) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return {_mm512_cvtepi32_ps(Signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b))};
  }
  static Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
  static Vec min(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
  static float reduce_add(Vec a) { return _mm512_reduce_add_ps(a.v); }
  // Lanes 0-3: the sums of a, b, c and d (lanes 4+ zero).
  static Vec reduce_add4(Vec a, Vec b, Vec c, Vec d) {
    const __m256 ab = _mm256_hadd_ps(fold(a.v), fold(b.v)), cd = _mm256_hadd_ps(fold(c.v), fold(d.v));
    const __m256 abcd = _mm256_hadd_ps(ab, cd);  // each 128-bit half: parts of a, b, c, d
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
    return {_mm512_insertf32x4(_mm512_setzero_ps(), s, 0)};
  }
  static __m256 fold(__m512 v) {  // the sum of the two 256-bit halves
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  }
};

#elif defined(__AVX2__)

struct Vec {
  static constexpr int kLanes = 8;
  __m256 v;
  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec set1(float x) { return {_mm256_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec load_partial(const float* p, int n) { return {_mm256_maskload_ps(p, mask(n))}; }
  static void store_partial(float* p, Vec a, int n) { _mm256_maskstore_ps(p, mask(n), a.v); }
  // Lanes 0-3 only (no masks: AMD's masked moves are slow): load4's other lanes are
  // unspecified, store4 writes 4 floats.
  static Vec load4(const float* p) { return {_mm256_castps128_ps256(_mm_loadu_ps(p))}; }
  static void store4(float* p, Vec a) { _mm_storeu_ps(p, _mm256_castps256_ps128(a.v)); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  static Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  static Vec sub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  template <bool Signed>
  static Vec load_q8(const unsigned char* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return {_mm256_cvtepi32_ps(Signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b))};
  }
  static Vec mul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
  static Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
  static float reduce_add(Vec a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Lanes 0-3: the sums of a, b, c and d (lanes 4+ zero).
  static Vec reduce_add4(Vec a, Vec b, Vec c, Vec d) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a.v, b.v), _mm256_hadd_ps(c.v, d.v));
    // each 128-bit half holds parts of a, b, c, d
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
    return {_mm256_insertf128_ps(_mm256_setzero_ps(), s, 0)};
  }
};

#elif defined(__aarch64__)

struct Vec {
  static constexpr int kLanes = 4;
  float32x4_t v;
  static Vec zero() { return {vdupq_n_f32(0.0f)}; }
  static Vec set1(float x) { return {vdupq_n_f32(x)}; }
  static Vec load(const float* p) { return {vld1q_f32(p)}; }
  static void store(float* p, Vec a) { vst1q_f32(p, a.v); }
  // n in [0, kLanes]: lanes >= n read as 0 / are not written. Lane-wise loads and stores, no
  // stack round trip (a temporary array compiles to memcpy calls, which made GCC spill the
  // GEMM's accumulators around every masked tail).
  static Vec load_partial(const float* p, int n) {
    const float32x2_t z = vdup_n_f32(0.0f);
    switch (n) {
      case 1: return {vcombine_f32(vld1_lane_f32(p, z, 0), z)};
      case 2: return {vcombine_f32(vld1_f32(p), z)};
      case 3: return {vcombine_f32(vld1_f32(p), vld1_lane_f32(p + 2, z, 0))};
      case 4: return {vld1q_f32(p)};
      default: return {vdupq_n_f32(0.0f)};
    }
  }
  static void store_partial(float* p, Vec a, int n) {
    switch (n) {
      case 1: vst1q_lane_f32(p, a.v, 0); break;
      case 2: vst1_f32(p, vget_low_f32(a.v)); break;
      case 3:
        vst1_f32(p, vget_low_f32(a.v));
        vst1q_lane_f32(p + 2, a.v, 2);
        break;
      case 4: vst1q_f32(p, a.v); break;
      default: break;
    }
  }
  // Lanes 0-3: the whole vector here.
  static Vec load4(const float* p) { return {vld1q_f32(p)}; }
  static void store4(float* p, Vec a) { vst1q_f32(p, a.v); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
  static Vec add(Vec a, Vec b) { return {vaddq_f32(a.v, b.v)}; }
  static Vec sub(Vec a, Vec b) { return {vsubq_f32(a.v, b.v)}; }
  template <bool Signed>
  static Vec load_q8(const unsigned char* p) {
    uint32_t bytes;
    __builtin_memcpy(&bytes, p, sizeof bytes);
    if (Signed)
      return {vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vcreate_s8(bytes)))))};
    return {vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(bytes)))))};
  }
  static Vec mul(Vec a, Vec b) { return {vmulq_f32(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {vmaxq_f32(a.v, b.v)}; }
  static Vec min(Vec a, Vec b) { return {vminq_f32(a.v, b.v)}; }
  static float reduce_add(Vec a) { return vaddvq_f32(a.v); }
  // The sums of a, b, c and d.
  static Vec reduce_add4(Vec a, Vec b, Vec c, Vec d) {
    return {vpaddq_f32(vpaddq_f32(a.v, b.v), vpaddq_f32(c.v, d.v))};
  }
};

#endif

// An activation prepared for the vector epilogue: relu/relu6 are a clamp to [lo, hi];
// hardsigmoid/hardswish multiply by (or are) clamp(alpha * x + beta, 0, 1).
struct VecActivation {
  ActKind kind;
  Vec lo, hi, alpha, beta, zero, one;
  explicit VecActivation(const Activation& a)
      : kind(a.kind),
        lo(Vec::set1(0.0f)),
        hi(Vec::set1(a.kind == ActKind::relu6 ? 6.0f : 3.4e38f)),
        alpha(Vec::set1(a.alpha)),
        beta(Vec::set1(a.beta)),
        zero(Vec::zero()),
        one(Vec::set1(1.0f)) {}
  inline Vec operator()(Vec x) const {
    switch (kind) {
      case ActKind::none: return x;
      case ActKind::relu:
      case ActKind::relu6: return Vec::min(Vec::max(x, lo), hi);
      case ActKind::hardsigmoid:
      case ActKind::hardswish: {
        Vec g = Vec::min(Vec::max(Vec::fmadd(x, alpha, beta), zero), one);
        return kind == ActKind::hardswish ? Vec::mul(x, g) : g;
      }
    }
    return x;
  }
};

}  // namespace
}  // namespace tmn
