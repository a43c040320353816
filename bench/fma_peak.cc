// Single-core FP32 FMA throughput: a loop of independent vector FMAs, no loads or stores.
//
// Built twice by bench/fma_peak.py: `-O2 -mavx512f -mfma` (zmm, 16 lanes) and
// `-O2 -mavx2 -mfma` (ymm, 8 lanes). Prints one line "<isa> <GFLOP/s>", the best of several
// timed trials of `seconds` each (a peak is a maximum, so the best trial is the least disturbed
// one; the benchmark runs single trials as long as its timed batches, next to each layer).
//
// Accumulators cover latency x throughput on current x86 cores (FMA latency 4, 2 FMA pipes ->
// 8 needed): 16 for AVX-512 (32 zmm registers), 12 for AVX2 (16 ymm, 2 hold the constants).
//
// Usage: fma_peak [seconds per trial, default 0.02] [trials, default 7]
#include <immintrin.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

#if defined(__AVX512F__)
using vec = __m512;
static const char* kIsa = "avx512";
constexpr int kAcc = 16;
static inline vec vset(float v) { return _mm512_set1_ps(v); }
static inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vfirst(vec v) { return _mm512_cvtss_f32(v); }
#else
using vec = __m256;
static const char* kIsa = "avx2";
constexpr int kAcc = 12;
static inline vec vset(float v) { return _mm256_set1_ps(v); }
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline float vfirst(vec v) { return _mm256_cvtss_f32(v); }
#endif

constexpr int kLanes = sizeof(vec) / sizeof(float);

// `iters` x kAcc FMAs; acc = acc * m + c stays bounded (|m| < 1), so no overflow or denormals.
// noipa: an opaque call, so the compiler cannot move the loop out of the timed region.
__attribute__((noipa)) static float run(long iters, float m, float c) {
  vec acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = vset(0.001f * i);
  const vec vm = vset(m), vc = vset(c);
  for (long n = 0; n < iters; ++n) {
#pragma GCC unroll 16
    for (int i = 0; i < kAcc; ++i) acc[i] = vfma(acc[i], vm, vc);
  }
  float s = 0;
  for (int i = 0; i < kAcc; ++i) s += vfirst(acc[i]);
  return s;
}

// CPU seconds of this thread taken by run(iters): the same clock as bench_kernels.timeit, so
// time slices the shared machine gives to other processes are not counted.
static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

static double timed(long iters, float m, float c) {
  const double t0 = cpu_now();
  volatile float sink = run(iters, m, c);
  (void)sink;
  return cpu_now() - t0;
}

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.02;
  const int trials = argc > 2 ? std::atoi(argv[2]) : 7;
  // m and c come from argc so the compiler cannot fold the loop away.
  const float m = 0.999999f - 1e-9f * argc, c = 1e-6f;

  // Calibrate: double up to an eighth of a trial, then scale linearly.
  long iters = 1000;
  double dt = timed(iters, m, c);
  while (dt < seconds / 8) dt = timed(iters *= 2, m, c);
  iters = static_cast<long>(iters * seconds / dt) + 1;

  double best = 0;
  for (int t = 0; t < trials; ++t) {
    const double gflops = 2.0 * kLanes * kAcc * static_cast<double>(iters) /
                          timed(iters, m, c) * 1e-9;
    if (gflops > best) best = gflops;
  }
  std::printf("%s %.2f\n", kIsa, best);
  return 0;
}
