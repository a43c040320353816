// A plain C++ test program (no framework) for the vector kernels and the C++-only model path.
// .ci/test-aarch64.sh cross-builds it for aarch64 and runs it under qemu-aarch64:
//
//   test_kernels [--refs DIR] [MODEL.tmn ...]
//
// 1. Every kernel of the tested ISA's KernelTable (NEON on aarch64; elsewhere the best ISA of
//    this CPU, so the program also runs natively) against the scalar reference table, on odd
//    shapes, with weights packed for each table's own panel width / channel block. Output
//    buffers start filled with a sentinel and end with a guard zone, so writes outside the
//    region a kernel owns (ldc > n columns, rows outside [oy_begin, oy_end), past the end)
//    show up as differences.
// 2. The .tmn reader: CRC-32 check value, and clear errors for truncated / corrupt files.
// 3. Each MODEL.tmn run whole through tmn::Plan (1 and 2 threads) built from the stored graph,
//    on the deterministic input of tests/test_aarch64_reference.py (x[i] = sin(i * 0.001),
//    flat NHWC), compared with DIR/<model>.logits written by that test on x86 (format: magic
//    "TMNREF01", u32 count, u32 0, count float32, little-endian). A missing reference fails.
//
// One line per test, then "N passed, M failed"; the exit status is non-zero if any test failed
// or none ran.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "ops/ops.h"
#include "runtime/isa.h"
#include "runtime/plan.h"
#include "runtime/tmn_reader.h"

using namespace tmn;

namespace {

int g_passed = 0, g_failed = 0;

// A test body returns "" on success or a description of the first failure; `detail` is
// printed after PASS (e.g. the max error).
void run_test(const std::string& name, const std::function<std::string(std::string&)>& body) {
  std::string detail, error;
  try {
    error = body(detail);
  } catch (const std::exception& e) {
    error = std::string("exception: ") + e.what();
  }
  if (error.empty()) {
    ++g_passed;
    std::printf("PASS %s%s%s\n", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
  } else {
    ++g_failed;
    std::printf("FAIL %s: %s\n", name.c_str(), error.c_str());
  }
  std::fflush(stdout);
}

// Deterministic pseudo-random floats in [lo, hi).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  float next(float lo = -1.0f, float hi = 1.0f) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>((s >> 40) & 0xFFFFFF) / 16777216.0f;
    return lo + (hi - lo) * u;
  }
  std::vector<float> fill(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = next(lo, hi);
    return v;
  }
};

constexpr float kSentinel = -12345.5f;
constexpr size_t kGuard = 37;  // floats after the region, must stay the sentinel

std::vector<float> out_buffer(size_t n) { return std::vector<float>(n + kGuard, kSentinel); }

// Max |got - want| over the whole buffers (guard included), relative to max(1, max|want|)
// where want is not the sentinel. Returns "" if within tol, else a description.
std::string compare(const std::vector<float>& got, const std::vector<float>& want, double tol,
                    const std::string& what, double* worst = nullptr) {
  if (got.size() != want.size()) return what + ": size mismatch";
  double scale = 1.0;
  for (float w : want)
    if (w != kSentinel) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  double max_err = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool gs = got[i] == kSentinel, ws = want[i] == kSentinel;
    double err;
    if (gs != ws || std::isnan(got[i]) != std::isnan(want[i])) err = INFINITY;
    else if (gs) err = 0.0;
    else err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= max_err)) max_err = err, at = i;
  }
  if (worst) *worst = std::max(*worst, max_err / scale);
  if (max_err <= tol * scale) return "";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: element %zu: got %.8g, want %.8g (err %.3g, tol %.3g)",
                what.c_str(), at, got[at], want[at], max_err, tol * scale);
  return buf;
}

std::string fmt_err(double worst) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "max rel err %.2e", worst);
  return buf;
}

const char* act_name(ActKind k) {
  switch (k) {
    case ActKind::none: return "none";
    case ActKind::relu: return "relu";
    case ActKind::relu6: return "relu6";
    case ActKind::hardswish: return "hardswish";
    case ActKind::hardsigmoid: return "hardsigmoid";
  }
  return "?";
}
const ActKind kActs[] = {ActKind::none, ActKind::relu, ActKind::relu6, ActKind::hardswish,
                         ActKind::hardsigmoid};

constexpr double kKernelTol = 1e-5;
const int32_t kChannels[] = {1, 3, 7, 17, 33};

// ------------------------------------------------------------------------------ GEMM
// One test per (k, n): body(k, n, seed, worst) returns "" or the first failure; seeds start
// at seed0 + k * 1000 + n, and the detail printed is the worst relative error.
void test_shapes(const std::string& name, std::initializer_list<int32_t> ks,
                 std::initializer_list<int32_t> ns, uint64_t seed0,
                 const std::function<std::string(int32_t, int32_t, uint64_t&, double*)>& body) {
  for (int32_t k : ks)
    for (int32_t n : ns)
      run_test(name + " k=" + std::to_string(k) + " n=" + std::to_string(n), [&](std::string& d) {
        double worst = 0.0;
        uint64_t seed = seed0 + k * 1000 + n;
        const std::string e = body(k, n, seed, &worst);
        if (e.empty()) d = fmt_err(worst);
        return e;
      });
}

std::string gemm_case(const KernelTable& t, const KernelTable& ref, int64_t m, int32_t k,
                      int32_t n, int64_t lda, int64_t ldc, bool residual, ActKind act,
                      uint64_t seed, double* worst) {
  Rng rng(seed);
  const std::vector<float> a = rng.fill(static_cast<size_t>((m - 1) * lda + k));
  const std::vector<float> w = rng.fill(static_cast<size_t>(n) * k);
  const std::vector<float> bias = rng.fill(n);
  const int64_t ldr = n + 5;
  const std::vector<float> r = rng.fill(static_cast<size_t>((m - 1) * ldr + n), -4.0f, 4.0f);
  std::vector<float> outs[2];
  const KernelTable* tables[2] = {&t, &ref};
  for (int i = 0; i < 2; ++i) {
    AlignedFloats packed(gemm_packed_floats(k, n, tables[i]->gemm_nr));
    pack_gemm_weights(w.data(), bias.data(), k, n, tables[i]->gemm_nr, packed.data());
    outs[i] = out_buffer(static_cast<size_t>((m - 1) * ldc + n));
    GemmArgs g;
    g.m = m, g.k = k, g.n = n, g.a = a.data(), g.lda = lda, g.packed_w = packed.data();
    g.c = outs[i].data(), g.ldc = ldc;
    if (residual) g.residual = r.data(), g.ldr = ldr;
    g.act.kind = act;
    tables[i]->gemm(g);
  }
  char what[160];
  std::snprintf(what, sizeof what, "m=%lld k=%d n=%d lda=%lld ldc=%lld residual=%d act=%s",
                static_cast<long long>(m), k, n, static_cast<long long>(lda),
                static_cast<long long>(ldc), residual, act_name(act));
  return compare(outs[0], outs[1], kKernelTol, what, worst);
}

void test_gemm(const KernelTable& t, const KernelTable& ref) {
  test_shapes("gemm", {1, 3, 7, 17, 33, 64}, {1, 3, 7, 16, 17, 24, 33, 40, 64}, 0,
              [&](int32_t k, int32_t n, uint64_t& seed, double* worst) {
    int variant = 0;
    for (int64_t m : {1, 2, 5, 7, 13, 31})
      for (ActKind act : kActs)
        for (bool residual : {false, true}) {
          ++variant;
          const int64_t lda = variant % 3 == 0 ? k + 3 : k;
          const int64_t ldc = variant % 2 == 0 ? n + 9 : n;
          std::string e = gemm_case(t, ref, m, k, n, lda, ldc, residual, act, ++seed, worst);
          if (!e.empty()) return e;
        }
    return std::string();
  });
}

// A fully connected layer on a batch (GemmArgs::gemv_order; GemvQ8Args::vectors): every row must
// get the bits it gets in a call of its own, and be right (against the scalar kernel).
std::string equal_bits(const std::vector<float>& got, const std::vector<float>& want,
                       const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "%s: element %zu: %.9g in the batch, %.9g alone", what.c_str(),
                    i, got[i], want[i]);
      return buf;
    }
  return "";
}

void test_batched_rows(const KernelTable& t, const KernelTable& ref) {
  test_shapes("batched rows", {1, 3, 7, 17, 33, 64, 300}, {1, 3, 7, 16, 17, 24, 33, 40}, 9000,
              [&](int32_t k, int32_t n, uint64_t& seed, double* worst) {
    for (int64_t m : {2, 5, 13})
      for (ActKind act : kActs) {
        Rng rng(++seed);
        const int64_t ld = k + static_cast<int32_t>(m % 3);
        const std::vector<float> x = rng.fill(static_cast<size_t>(m * ld));
        const std::vector<float> w = rng.fill(static_cast<size_t>(n) * k), bias = rng.fill(n);
        std::vector<unsigned char> q(static_cast<size_t>(n) * k);
        for (unsigned char& v : q) v = static_cast<unsigned char>(rng.next(0.0f, 255.99f));
        const std::vector<float> scale = rng.fill(n, 0.001f, 0.02f), zero(n, 128.0f);
        char what[120];
        std::snprintf(what, sizeof what, "m=%lld k=%d n=%d act=%s", static_cast<long long>(m),
                      k, n, act_name(act));
        // float32: one call on m rows, m calls of one row, and the scalar kernel
        std::vector<float> batch, alone(static_cast<size_t>(m) * n), want;
        const KernelTable* tables[2] = {&t, &ref};
        for (int i = 0; i < 2; ++i) {
          AlignedFloats packed(gemm_packed_floats(k, n, tables[i]->gemm_nr));
          pack_gemm_weights(w.data(), bias.data(), k, n, tables[i]->gemm_nr, packed.data());
          std::vector<float>& out = i == 0 ? batch : want;
          out.assign(static_cast<size_t>(m) * n, 0.0f);
          GemmArgs g;
          g.m = m, g.k = k, g.n = n, g.a = x.data(), g.lda = ld, g.packed_w = packed.data();
          g.c = out.data(), g.ldc = n, g.gemv_order = true;
          g.act.kind = act;
          tables[i]->gemm(g);
          if (i == 0)
            for (int64_t r = 0; r < m; ++r) {
              g.m = 1, g.a = x.data() + r * ld, g.c = alone.data() + r * n;
              tables[i]->gemm(g);
            }
        }
        std::string e = equal_bits(batch, alone, std::string("gemm ") + what);
        if (e.empty()) e = compare(batch, want, kKernelTol, std::string("gemm ") + what, worst);
        if (!e.empty()) return e;
        // 8-bit weights: the same for GemvQ8Args::vectors
        std::vector<float> qbatch(static_cast<size_t>(m) * n), qalone(qbatch.size()), qwant(qbatch.size());
        for (int i = 0; i < 2; ++i) {
          GemvQ8Args g;
          g.k = k, g.q = q.data(), g.scale = scale.data(), g.zero = zero.data();
          g.bias = bias.data(), g.row_begin = 0, g.row_end = n, g.act.kind = act;
          g.x = x.data(), g.ldx = ld, g.vectors = m, g.y = (i == 0 ? qbatch : qwant).data(), g.ldy = n;
          tables[i]->gemv_q8(g);
          if (i == 0)
            for (int64_t r = 0; r < m; ++r) {
              g.vectors = 1, g.x = x.data() + r * ld, g.y = qalone.data() + r * n;
              tables[i]->gemv_q8(g);
            }
        }
        e = equal_bits(qbatch, qalone, std::string("gemv_q8 ") + what);
        if (e.empty()) e = compare(qbatch, qwant, kKernelTol, std::string("gemv_q8 ") + what, worst);
        if (!e.empty()) return e;
      }
    return std::string();
  });
}

// ------------------------------------------------------------------------------ GEMV, 8-bit weights
void test_gemv_q8(const KernelTable& t, const KernelTable& ref) {
  test_shapes("gemv_q8", {1, 3, 7, 17, 33, 48, 64, 130, 256, 257, 300, 1030},  // short, long rows
              {1, 3, 7, 16, 17, 33, 40, 100}, 7000,
              [&](int32_t k, int32_t n, uint64_t& seed, double* worst) {
    for (bool is_signed : {false, true})
      for (bool per_column : {false, true})
        for (ActKind act : kActs) {
          Rng rng(++seed);
          const std::vector<float> x = rng.fill(k), bias = rng.fill(n);
          std::vector<unsigned char> q(static_cast<size_t>(n) * k);
          for (unsigned char& v : q) v = static_cast<unsigned char>(rng.next(0.0f, 255.99f));
          std::vector<float> scale = rng.fill(per_column ? n : 1, 0.001f, 0.02f);
          std::vector<int32_t> zero(scale.size());
          for (int32_t& z : zero)
            z = static_cast<int32_t>(rng.next(is_signed ? -20.0f : 100.0f, is_signed ? 20.0f : 150.0f));
          // The kernel takes one scale / zero point / bias per output (the op expands
          // per-tensor values).
          std::vector<float> s(n), z(n);
          for (int32_t j = 0; j < n; ++j) {
            s[j] = scale[per_column ? j : 0];
            z[j] = static_cast<float>(zero[per_column ? j : 0]);
          }
          std::vector<float> outs[2];
          const KernelTable* tables[2] = {&t, &ref};
          for (int i = 0; i < 2; ++i) {
            outs[i] = out_buffer(n);
            GemvQ8Args g;
            g.k = k, g.x = x.data(), g.q = q.data(), g.is_signed = is_signed;
            g.scale = s.data(), g.zero = z.data();
            g.bias = n % 2 ? nullptr : bias.data();  // no bias: zeros
            g.y = outs[i].data();
            g.act.kind = act;
            // Rows in two calls split at an odd row: no output depends on the split.
            g.row_begin = 0, g.row_end = n / 3;
            tables[i]->gemv_q8(g);
            g.row_begin = n / 3, g.row_end = n;
            tables[i]->gemv_q8(g);
          }
          char what[160];
          std::snprintf(what, sizeof what, "k=%d n=%d signed=%d per_column=%d act=%s", k, n,
                        is_signed, per_column, act_name(act));
          std::string e = compare(outs[0], outs[1], kKernelTol, what, worst);
          if (!e.empty()) return e;
        }
    return std::string();
  });
}

// ------------------------------------------------------------------------------ depthwise
struct DwCase {
  int32_t h, w, c, k, s, pad_top, pad_left, pad_bottom, pad_right;
  int64_t in_ld, out_ld;
  ActKind act;
  int32_t dil = 1;  // rows and columns (stride 1 only)
};

// Row ranges a kernel is run over: the whole output, an inner range, and the output split in
// 3 calls (each must give the rows a whole-output call gives).
std::vector<std::vector<std::pair<int32_t, int32_t>>> row_range_plans(int32_t out_h) {
  std::vector<std::vector<std::pair<int32_t, int32_t>>> plans = {{{0, out_h}}};
  if (out_h >= 3) plans.push_back({{1, out_h - 1}});
  if (out_h >= 3) plans.push_back({{0, out_h / 3}, {out_h / 3, 2 * out_h / 3}, {2 * out_h / 3, out_h}});
  return plans;
}

std::string dwconv_case(const KernelTable& t, const KernelTable& ref, const DwCase& p,
                        uint64_t seed, double* worst) {
  const int32_t extent = (p.k - 1) * p.dil + 1;
  const int32_t out_h = (p.h + p.pad_top + p.pad_bottom - extent) / p.s + 1;
  const int32_t out_w = (p.w + p.pad_left + p.pad_right - extent) / p.s + 1;
  if (out_h < 1 || out_w < 1) return "";
  Rng rng(seed);
  const std::vector<float> in = rng.fill(static_cast<size_t>(p.h) * p.w * p.in_ld, -2.0f, 2.0f);
  const std::vector<float> w = rng.fill(static_cast<size_t>(p.c) * p.k * p.k);
  const std::vector<float> bias = rng.fill(p.c);
  const size_t out_floats = static_cast<size_t>(out_h) * out_w * p.out_ld;
  for (const auto& ranges : row_range_plans(out_h)) {
    std::vector<float> outs[2];
    const KernelTable* tables[2] = {&t, &ref};
    for (int i = 0; i < 2; ++i) {
      AlignedFloats packed(dwconv_packed_floats(p.c, p.k, p.k, tables[i]->dwconv_cb));
      pack_dwconv_weights(w.data(), bias.data(), p.c, p.k, p.k, tables[i]->dwconv_cb, packed.data());
      outs[i] = out_buffer(out_floats);
      DwconvArgs d;
      d.in = in.data(), d.h = p.h, d.w = p.w, d.c = p.c, d.in_ld = p.in_ld;
      d.out = outs[i].data(), d.out_h = out_h, d.out_w = out_w, d.out_ld = p.out_ld;
      d.kh = d.kw = p.k, d.sh = d.sw = p.s, d.pad_top = p.pad_top, d.pad_left = p.pad_left;
      d.dil_h = d.dil_w = p.dil;
      d.packed_w = packed.data();
      d.act.kind = p.act;
      for (const auto& [r0, r1] : ranges) {
        d.oy_begin = r0, d.oy_end = r1;
        tables[i]->dwconv(d);
      }
    }
    char what[200];
    std::snprintf(what, sizeof what,
                  "h=%d w=%d c=%d dil=%d pads(t,l,b,r)=%d,%d,%d,%d in_ld=%lld out_ld=%lld act=%s rows=[%d,%d)x%zu",
                  p.h, p.w, p.c, p.dil, p.pad_top, p.pad_left, p.pad_bottom, p.pad_right,
                  static_cast<long long>(p.in_ld), static_cast<long long>(p.out_ld),
                  act_name(p.act), ranges.front().first, ranges.back().second, ranges.size());
    std::string e = compare(outs[0], outs[1], kKernelTol, what, worst);
    if (!e.empty()) return e;
  }
  return "";
}

void test_dwconv(const KernelTable& t, const KernelTable& ref) {
  const std::pair<int32_t, int32_t> sizes[] = {{1, 1}, {2, 3}, {5, 7}, {9, 6}, {4, 19}, {17, 11}, {13, 40}};
  for (int32_t k : {3, 5})
    for (int32_t s : {1, 2})
      for (int32_t dil : {1, 2, 4})
        for (int32_t c : kChannels) {
          if (dil > 1 && (s > 1 || k > 3)) continue;  // dilated: DeepLab's k3 s1
          const std::string name = "dwconv k=" + std::to_string(k) + " s=" + std::to_string(s) +
                                   " dil=" + std::to_string(dil) + " c=" + std::to_string(c);
          run_test(name, [&](std::string& d) {
            double worst = 0.0;
            uint64_t seed = k * 100000 + s * 1000 + dil * 500 + c;
            int variant = 0;
            const int32_t half = k / 2;
            // (top, left, bottom, right): symmetric, valid, TF-same style (extra bottom/right),
            // asymmetric with extra top/left, and mixed.
            const int32_t pads[][4] = {{half, half, half, half}, {0, 0, 0, 0}, {half - 1 + (k == 3), half - 1 + (k == 3), half, half},
                                       {0, 0, half, half},       {half, 0, 0, half}, {1, half, half, 0}};
            for (const auto& hw : sizes)
              for (const auto& pd : pads) {
                ++variant;
                DwCase p{hw.first, hw.second, c, k, s, pd[0], pd[1], pd[2], pd[3],
                         variant % 3 == 0 ? c + 4 : c, variant % 4 == 1 ? c + 3 : c,
                         kActs[variant % 5], dil};
                std::string e = dwconv_case(t, ref, p, ++seed, &worst);
                if (!e.empty()) return e;
              }
            d = fmt_err(worst);
            return std::string();
          });
        }
}

// ------------------------------------------------------------------------------ stem
struct StemCase {
  int32_t h, w, cout, pad_top, pad_left, pad_bottom, pad_right;
  int64_t in_ld, out_ld;
  ActKind act;
};

std::string stem_case(const KernelTable& t, const KernelTable& ref, const StemCase& p,
                      uint64_t seed, double* worst) {
  const int32_t out_h = (p.h + p.pad_top + p.pad_bottom - kStemK) / kStemStride + 1;
  const int32_t out_w = (p.w + p.pad_left + p.pad_right - kStemK) / kStemStride + 1;
  if (p.h + p.pad_top + p.pad_bottom < kStemK || p.w + p.pad_left + p.pad_right < kStemK) return "";
  Rng rng(seed);
  const std::vector<float> in = rng.fill(static_cast<size_t>(p.h) * p.w * p.in_ld, -2.0f, 2.0f);
  const std::vector<float> w = rng.fill(static_cast<size_t>(p.cout) * kStemCin * kStemK * kStemK);
  const std::vector<float> bias = rng.fill(p.cout);
  const size_t out_floats = static_cast<size_t>(out_h) * out_w * p.out_ld;
  for (const auto& ranges : row_range_plans(out_h)) {
    std::vector<float> outs[2];
    const KernelTable* tables[2] = {&t, &ref};
    for (int i = 0; i < 2; ++i) {
      AlignedFloats packed(stem_packed_floats(p.cout, tables[i]->stem_cb));
      pack_stem_weights(w.data(), bias.data(), p.cout, tables[i]->stem_cb, packed.data());
      outs[i] = out_buffer(out_floats);
      StemArgs d;
      d.in = in.data(), d.h = p.h, d.w = p.w, d.in_ld = p.in_ld;
      d.out = outs[i].data(), d.out_h = out_h, d.out_w = out_w, d.cout = p.cout;
      d.out_ld = p.out_ld;
      d.pad_top = p.pad_top, d.pad_left = p.pad_left;
      d.packed_w = packed.data();
      d.act.kind = p.act;
      for (const auto& [r0, r1] : ranges) {
        d.oy_begin = r0, d.oy_end = r1;
        tables[i]->stem(d);
      }
    }
    char what[200];
    std::snprintf(what, sizeof what,
                  "h=%d w=%d cout=%d pads(t,l,b,r)=%d,%d,%d,%d in_ld=%lld out_ld=%lld act=%s rows=[%d,%d)x%zu",
                  p.h, p.w, p.cout, p.pad_top, p.pad_left, p.pad_bottom, p.pad_right,
                  static_cast<long long>(p.in_ld), static_cast<long long>(p.out_ld),
                  act_name(p.act), ranges.front().first, ranges.back().second, ranges.size());
    std::string e = compare(outs[0], outs[1], kKernelTol, what, worst);
    if (!e.empty()) return e;
  }
  return "";
}

void test_stem(const KernelTable& t, const KernelTable& ref) {
  const std::pair<int32_t, int32_t> sizes[] = {{1, 1}, {2, 3}, {5, 7}, {9, 6}, {4, 19},
                                               {17, 11}, {13, 40}, {30, 57}};
  // (top, left, bottom, right): torch's 1, TF SAME at even sizes, none, and asymmetric.
  const int32_t pads[][4] = {{1, 1, 1, 1}, {0, 0, 1, 1}, {0, 0, 0, 0}, {1, 0, 0, 1}, {2, 1, 1, 2}};
  for (int32_t cout : {1, 3, 7, 8, 16, 17, 24, 32, 33, 48}) {
    run_test("stem cout=" + std::to_string(cout), [&](std::string& d) {
      double worst = 0.0;
      uint64_t seed = 7000 + cout;
      int variant = 0;
      for (const auto& hw : sizes)
        for (const auto& pd : pads) {
          ++variant;
          StemCase p{hw.first, hw.second, cout, pd[0], pd[1], pd[2], pd[3],
                     variant % 3 == 0 ? kStemCin + 2 : kStemCin,
                     variant % 4 == 1 ? cout + 3 : cout, kActs[variant % 5]};
          std::string e = stem_case(t, ref, p, ++seed, &worst);
          if (!e.empty()) return e;
        }
      d = fmt_err(worst);
      return std::string();
    });
  }
}

// ------------------------------------------------------------------------------ pooling
void test_pool(const KernelTable& t, const KernelTable& ref) {
  for (PoolKind kind : {PoolKind::average, PoolKind::max})
    for (int32_t c : kChannels) {
      const std::string name = std::string("pool ") + (kind == PoolKind::max ? "max" : "avg") +
                               " c=" + std::to_string(c);
      run_test(name, [&](std::string& d) {
        double worst = 0.0;
        uint64_t seed = 7000 + c * 2 + (kind == PoolKind::max);
        int variant = 0;
        const std::pair<int32_t, int32_t> sizes[] = {{1, 1}, {3, 5}, {7, 7}, {8, 13}};
        // kernel, stride, pad top/left/bottom/right, count_include_pad
        const int32_t cfgs[][7] = {{1, 1, 0, 0, 0, 0, 0}, {2, 2, 0, 0, 0, 0, 0}, {3, 2, 1, 1, 1, 1, 0},
                                   {3, 2, 1, 1, 1, 1, 1}, {3, 1, 0, 1, 2, 1, 0}, {5, 3, 2, 0, 2, 2, 1}};
        for (const auto& hw : sizes)
          for (const auto& cf : cfgs) {
            ++variant;
            const int32_t h = hw.first, w = hw.second, kk = cf[0], s = cf[1];
            const int32_t out_h = (h + cf[2] + cf[4] - kk) / s + 1, out_w = (w + cf[3] + cf[5] - kk) / s + 1;
            if (h + cf[2] + cf[4] < kk || w + cf[3] + cf[5] < kk) continue;
            const int64_t in_ld = variant % 2 ? c : c + 2, out_ld = variant % 3 ? c : c + 5;
            Rng rng(++seed);
            const std::vector<float> in = rng.fill(static_cast<size_t>(h) * w * in_ld, -3.0f, 3.0f);
            std::vector<float> outs[2];
            const KernelTable* tables[2] = {&t, &ref};
            for (int i = 0; i < 2; ++i) {
              outs[i] = out_buffer(static_cast<size_t>(out_h) * out_w * out_ld);
              PoolArgs p;
              p.kind = kind, p.in = in.data(), p.h = h, p.w = w, p.c = c, p.in_ld = in_ld;
              p.out = outs[i].data(), p.out_h = out_h, p.out_w = out_w, p.out_ld = out_ld;
              p.kh = p.kw = kk, p.sh = p.sw = s, p.pad_top = cf[2], p.pad_left = cf[3];
              p.count_include_pad = cf[6];
              p.oy_begin = out_h > 2 ? 1 : 0, p.oy_end = out_h;  // a row range too
              tables[i]->pool(p);
              if (p.oy_begin == 1) p.oy_begin = 0, p.oy_end = 1, tables[i]->pool(p);
            }
            char what[160];
            std::snprintf(what, sizeof what, "h=%d w=%d k=%d s=%d pads=%d,%d,%d,%d cip=%d", h, w, kk, s,
                          cf[2], cf[3], cf[4], cf[5], cf[6]);
            std::string e = compare(outs[0], outs[1], kKernelTol, what, &worst);
            if (!e.empty()) return e;
          }
        d = fmt_err(worst);
        return std::string();
      });
    }
  for (int32_t c : kChannels)
    run_test("global_avg_pool c=" + std::to_string(c), [&](std::string& d) {
      double worst = 0.0;
      for (int64_t pixels : {1, 2, 7, 49, 150})
        for (int64_t ld : {static_cast<int64_t>(c), static_cast<int64_t>(c) + 3}) {
          Rng rng(900 + pixels * 7 + ld);
          const std::vector<float> in = rng.fill(static_cast<size_t>(pixels * ld));
          std::vector<float> a = out_buffer(c), b = out_buffer(c);
          t.global_avg_pool(in.data(), pixels, c, ld, a.data());
          ref.global_avg_pool(in.data(), pixels, c, ld, b.data());
          std::string e = compare(a, b, kKernelTol,
                                  "pixels=" + std::to_string(pixels) + " ld=" + std::to_string(ld), &worst);
          if (!e.empty()) return e;
        }
      d = fmt_err(worst);
      return std::string();
    });
}

// ------------------------------------------------------------------------------ elementwise
void test_eltwise(const KernelTable& t, const KernelTable& ref) {
  const int64_t counts[] = {1, 2, 3, 4, 5, 7, 17, 33, 100, 1023};
  for (ActKind act : kActs) {
    run_test(std::string("activation ") + act_name(act), [&](std::string& d) {
      double worst = 0.0;
      Activation a;
      a.kind = act;
      for (int64_t n : counts) {
        Rng rng(31 + n);
        const std::vector<float> x = rng.fill(n, -8.0f, 8.0f);
        std::vector<float> y0 = out_buffer(n), y1 = out_buffer(n);
        t.activation(x.data(), y0.data(), n, a);
        ref.activation(x.data(), y1.data(), n, a);
        std::string e = compare(y0, y1, kKernelTol, "count=" + std::to_string(n), &worst);
        if (!e.empty()) return e;
        std::vector<float> inplace = x;  // y aliases x
        inplace.resize(n + kGuard, kSentinel);
        t.activation(inplace.data(), inplace.data(), n, a);
        e = compare(inplace, y1, kKernelTol, "in place, count=" + std::to_string(n), &worst);
        if (!e.empty()) return e;
      }
      d = fmt_err(worst);
      return std::string();
    });
    run_test(std::string("add ") + act_name(act), [&](std::string& d) {
      double worst = 0.0;
      Activation a;
      a.kind = act;
      for (int64_t n : counts) {
        Rng rng(77 + n);
        const std::vector<float> x = rng.fill(n, -6.0f, 6.0f), y = rng.fill(n, -6.0f, 6.0f);
        std::vector<float> y0 = out_buffer(n), y1 = out_buffer(n);
        t.add(x.data(), y.data(), y0.data(), n, a);
        ref.add(x.data(), y.data(), y1.data(), n, a);
        std::string e = compare(y0, y1, kKernelTol, "count=" + std::to_string(n), &worst);
        if (!e.empty()) return e;
      }
      d = fmt_err(worst);
      return std::string();
    });
  }
  for (int32_t c : kChannels)
    run_test("mul_channels c=" + std::to_string(c), [&](std::string& d) {
      double worst = 0.0;
      for (int64_t pixels : {1, 3, 10})
        for (int64_t ld : {static_cast<int64_t>(c), static_cast<int64_t>(c) + 5}) {
          Rng rng(5 + pixels * 3 + ld);
          const std::vector<float> x = rng.fill(static_cast<size_t>(pixels * ld)), s = rng.fill(c);
          // Lanes between channels and ld are left alone: start both outputs from x's copy.
          std::vector<float> y0 = x, y1 = x;
          y0.resize(x.size() + kGuard, kSentinel), y1.resize(x.size() + kGuard, kSentinel);
          t.mul_channels(x.data(), s.data(), y0.data(), pixels, c, ld);
          ref.mul_channels(x.data(), s.data(), y1.data(), pixels, c, ld);
          std::string e = compare(y0, y1, kKernelTol,
                                  "pixels=" + std::to_string(pixels) + " ld=" + std::to_string(ld), &worst);
          if (!e.empty()) return e;
        }
      d = fmt_err(worst);
      return std::string();
    });
}

// ------------------------------------------------------------------------------ .tmn reader
std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write_all(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

// "" if loading `path` throws std::invalid_argument mentioning the path and `needle`.
std::string expect_invalid(const std::string& path, const std::string& needle) {
  try {
    TmnFile f(path);
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    if (msg.find(path) == std::string::npos) return "error does not name the file: " + msg;
    if (msg.find(needle) == std::string::npos) return "error lacks '" + needle + "': " + msg;
    return "";
  }
  return "loading " + path + " did not throw (expected '" + needle + "')";
}

void test_reader(const std::string& model) {
  run_test("crc32 check value", [](std::string&) -> std::string {
    const char* s = "123456789";
    if (crc32(s, 9) != 0xCBF43926u) return "crc32(\"123456789\") != 0xCBF43926";
    if (crc32(s + 4, 5, crc32(s, 4)) != 0xCBF43926u) return "chained crc32 differs";
    if (crc32(s, 0) != 0u) return "crc32 of nothing is not 0";
    return "";
  });
  if (model.empty()) return;
  run_test("tmn_reader rejects corrupt files", [&](std::string&) -> std::string {
    const std::vector<char> good = read_all(model);
    const std::string tmp = "/tmp/tinymnet-test-" + std::to_string(static_cast<long>(std::rand())) + ".tmn";
    struct Cleanup {
      std::string p;
      ~Cleanup() { std::remove(p.c_str()); }
    } cleanup{tmp};
    auto check = [&](std::vector<char> bytes, const std::string& needle) {
      write_all(tmp, bytes);
      return expect_invalid(tmp, needle);
    };
    std::string e;
    if (!(e = check(std::vector<char>(good.begin(), good.begin() + 40), "too short")).empty()) return e;
    if (!(e = check(std::vector<char>(good.begin(), good.end() - 100), "truncated")).empty()) return e;
    std::vector<char> bad = good;
    bad[0] = 'X';
    if (!(e = check(bad, "bad magic")).empty()) return e;
    bad = good;
    bad[8] = 2;
    if (!(e = check(bad, "version")).empty()) return e;
    bad = good;
    bad[bad.size() - 10] ^= 0x40;
    if (!(e = check(bad, "checksum")).empty()) return e;
    bad = good;
    bad[70] ^= 0x01;  // inside the JSON header
    if (!(e = check(bad, "checksum")).empty()) return e;
    if (!(e = expect_invalid("/nonexistent/model.tmn", "cannot open")).empty()) return e;
    return "";
  });
}

// ------------------------------------------------------------------------------ models
std::string basename_no_ext(const std::string& path) {
  std::string b = path.substr(path.find_last_of('/') + 1);
  const size_t dot = b.rfind(".tmn");
  return dot == std::string::npos ? b : b.substr(0, dot);
}

std::vector<float> read_reference(const std::string& path) {
  const std::vector<char> raw = read_all(path);
  if (raw.size() < 16 || std::memcmp(raw.data(), "TMNREF01", 8) != 0)
    throw std::runtime_error(path + ": not a reference logits file");
  uint32_t count;
  std::memcpy(&count, raw.data() + 8, 4);
  if (raw.size() != 16 + 4ull * count) throw std::runtime_error(path + ": wrong size");
  std::vector<float> v(count);
  std::memcpy(v.data(), raw.data() + 16, 4ull * count);
  return v;
}

void test_model(const std::string& path, const std::string& refs, Isa isa) {
  const std::string name = basename_no_ext(path);
  std::vector<float> ref;
  std::unique_ptr<TmnFile> file;
  run_test("load " + name, [&](std::string& d) -> std::string {
    const std::string ref_path = refs + "/" + name + ".logits";
    ref = read_reference(ref_path);
    file = std::make_unique<TmnFile>(path);
    d = std::to_string(file->params().size()) + " params, " + std::to_string(ref.size()) + " reference logits";
    return "";
  });
  if (!file) return;
  for (int threads : {1, 2}) {
    run_test("model " + name + " threads=" + std::to_string(threads) + " isa=" + isa_name(isa),
             [&](std::string& d) -> std::string {
               Plan plan(file->graph(), file->params(), threads, isa);
               const auto& dims = plan.input_dims();
               const int64_t n = dims[0] * dims[1] * dims[2];
               std::vector<float> x(n);
               for (int64_t i = 0; i < n; ++i)
                 x[i] = static_cast<float>(std::sin(static_cast<double>(i) * 0.001));
               const auto& od = plan.output_dims();
               const int64_t outs = od[0] * od[1] * od[2];
               if (outs != static_cast<int64_t>(ref.size()))
                 return "plan gives " + std::to_string(outs) + " outputs, reference has " +
                        std::to_string(ref.size());
               std::vector<float> y(outs);
               plan.run(x.data(), 1, y.data());
               double scale = 0.0;
               for (float r : ref) scale = std::max(scale, static_cast<double>(std::fabs(r)));
               double max_err = 0.0;
               for (size_t i = 0; i < y.size(); ++i)
                 max_err = std::max(max_err, std::isfinite(y[i]) ? std::fabs(static_cast<double>(y[i]) - ref[i]) : INFINITY);
               const size_t top = std::max_element(y.begin(), y.end()) - y.begin();
               const size_t ref_top = std::max_element(ref.begin(), ref.end()) - ref.begin();
               char buf[160];
               std::snprintf(buf, sizeof buf, "max |err| %.3g, rel to max|ref| (%.3g): %.2e, top-1 %zu (ref %zu)",
                             max_err, scale, max_err / scale, top, ref_top);
               d = std::string(buf) + ", " + std::to_string(plan.mapped_weight_bytes()) +
                   " bytes of weights used in place";
               if (!(max_err <= 1e-4 * scale)) return std::string(buf) + " exceeds 1e-4";
               // panels16.tmn stores its GEMM weights packed for 16-wide panels (NEON's)
               if (name == "panels16" && kernel_table(isa).gemm_nr == 16 && plan.mapped_weight_bytes() == 0)
                 return "the stored panels were not used in place";
               return "";
             });
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string refs;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--refs" && i + 1 < argc) refs = argv[++i];
    else if (a == "-h" || a == "--help") {
      std::printf("usage: %s [--refs DIR] [MODEL.tmn ...]\n", argv[0]);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    } else models.push_back(a);
  }
  if (!models.empty() && refs.empty()) {
    std::fprintf(stderr, "models given without --refs DIR\n");
    return 2;
  }

#if defined(__aarch64__)
  const Isa isa = Isa::neon;
#else
  const Isa isa = best_isa();
#endif
  std::printf("testing ISA %s against scalar (available:", isa_name(isa));
  for (Isa i : available_isas()) std::printf(" %s", isa_name(i));
  std::printf(")\n");
  run_test(std::string("isa ") + isa_name(isa) + " available", [&](std::string&) -> std::string {
    if (!isa_available(isa)) return "not available in this build / CPU";
    if (std::string(kernel_table(isa).name) != isa_name(isa)) return "kernel_table gives " + std::string(kernel_table(isa).name);
    return "";
  });
  const KernelTable& t = kernel_table(isa);
  const KernelTable& ref = kernel_table(Isa::scalar);

  test_gemm(t, ref);
  test_gemv_q8(t, ref);
  test_batched_rows(t, ref);
  test_dwconv(t, ref);
  test_stem(t, ref);
  test_pool(t, ref);
  test_eltwise(t, ref);
  test_reader(models.empty() ? std::string() : models[0]);
  for (const std::string& m : models) test_model(m, refs, isa);

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 && g_passed > 0 ? 0 : 1;
}
