#include "ops/ops.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace tmn {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

std::pair<int32_t, int32_t> same_pads(int32_t size, int32_t k, int32_t s) {
  const int32_t out = (size + s - 1) / s;
  const int32_t total = std::max((out - 1) * s + k - size, 0);
  return {total / 2, total - total / 2};
}

}  // namespace

namespace {

constexpr size_t kHugePage = size_t{2} << 20;
thread_local WeightPool* current_pool = nullptr;

size_t aligned_bytes(int64_t count) {
  return ((static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float)) + 63) &
         ~static_cast<size_t>(63);
}

// `bytes` at a 2 MiB boundary when that large, whole huge pages advised as such (Linux;
// elsewhere, or with THP off, plain pages: only slower to touch the first time).
void* alloc_big(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, bytes >= kHugePage ? kHugePage : 64, bytes) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (bytes >= kHugePage) madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
  return p;
}

}  // namespace

WeightPool::~WeightPool() {
  for (void* c : chunks_) std::free(c);
}

float* WeightPool::allocate(int64_t count) {
  const size_t bytes = aligned_bytes(count);
  if (bytes > left_) {  // a new chunk; the rest of the old one is never touched
    const size_t chunk = std::max(bytes, size_t{8} << 20);
    chunks_.push_back(alloc_big(chunk));
    next_ = static_cast<char*>(chunks_.back()), left_ = chunk;
  }
  float* p = reinterpret_cast<float*>(next_);
  next_ += bytes, left_ -= bytes;
  allocated_ += static_cast<int64_t>(bytes);
  return p;
}

WeightPoolScope::WeightPoolScope(WeightPool* pool) : previous_(current_pool) { current_pool = pool; }
WeightPoolScope::~WeightPoolScope() { current_pool = previous_; }

AlignedFloats::AlignedFloats(int64_t count, bool heap) : size_(count) {
  if (current_pool && !heap) {
    data_ = std::unique_ptr<float[], FreeUnlessPooled>(current_pool->allocate(count),
                                                       FreeUnlessPooled{true});
    return;
  }
  data_ = std::unique_ptr<float[], FreeUnlessPooled>(
      static_cast<float*>(alloc_big(aligned_bytes(count))), FreeUnlessPooled{false});
}

const float* WeightSource::all(int64_t count, std::vector<float>& scratch) const {
  if (data) return data;
  scratch.resize(static_cast<size_t>(count));
  values(0, count, scratch.data());
  return scratch.data();
}

AlignedFloats AlignedFloats::borrowed(const float* data, int64_t count,
                                     std::shared_ptr<const void> owner) {
  if (current_pool) current_pool->add_mapped(count * static_cast<int64_t>(sizeof(float)));
  AlignedFloats a;
  a.data_ = std::unique_ptr<float[], FreeUnlessPooled>(const_cast<float*>(data),
                                                       FreeUnlessPooled{true});
  a.size_ = count;
  a.owner_ = std::move(owner);
  return a;
}

// The GEMM panels of W (n, k) with `bias` (null: zeros) for panel width nr. Weights a .tmn
// file stores packed for this width are used where they lie (no copy: loading skips the
// packing and the fresh memory it writes) when their bias rows are the op's bias; others are
// packed here, one panel (nr rows of W) at a time when given as values, which are then
// produced only one panel ahead, into a buffer that stays in L2.
static AlignedFloats gemm_panels(const WeightSource& w, const float* bias, int32_t k, int32_t n,
                                 int32_t nr) {
  const int64_t floats = gemm_packed_floats(k, n, nr);
  const PackedGemmWeights& p = w.packed;
  if (p.panels && p.nr == nr && p.n == n && p.k == k) {
    bool same_bias = true;
    for (int32_t n0 = 0; n0 < n && same_bias; n0 += nr) {
      const float* row = p.panels + static_cast<int64_t>(n0) * (k + 1);
      for (int32_t j = 0; j < std::min(nr, n - n0) && same_bias; ++j)
        same_bias = row[j] == (bias ? bias[n0 + j] : 0.0f);
    }
    if (same_bias) return AlignedFloats::borrowed(p.panels, floats, p.owner);
  }
  AlignedFloats packed(floats);
  if (w.data) {
    pack_gemm_weights(w.data, bias, k, n, nr, packed.data());
    return packed;
  }
  thread_local std::vector<float> rows;
  rows.resize(static_cast<size_t>(nr) * k);
  for (int32_t n0 = 0; n0 < n; n0 += nr) {
    const int32_t count = std::min(nr, n - n0);
    w.values(static_cast<int64_t>(n0) * k, static_cast<int64_t>(count) * k, rows.data());
    pack_gemm_weights(rows.data(), bias ? bias + n0 : nullptr, k, count, nr,
                      packed.data() + static_cast<int64_t>(n0) * (k + 1));
  }
  return packed;
}

WindowGeometry window_geometry(int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t sh,
                               int32_t sw, const Padding& pad) {
  require(kh >= 1 && kw >= 1, "kernel size must be positive");
  require(sh >= 1 && sw >= 1, "stride must be positive");
  require(pad.top >= 0 && pad.bottom >= 0 && pad.left >= 0 && pad.right >= 0,
          "padding must not be negative");
  WindowGeometry g{};
  if (pad.same) {
    std::tie(g.pad_top, g.pad_bottom) = same_pads(h, kh, sh);
    std::tie(g.pad_left, g.pad_right) = same_pads(w, kw, sw);
  } else {
    g.pad_top = pad.top, g.pad_bottom = pad.bottom, g.pad_left = pad.left, g.pad_right = pad.right;
  }
  const int64_t ph = static_cast<int64_t>(h) + g.pad_top + g.pad_bottom;
  const int64_t pw = static_cast<int64_t>(w) + g.pad_left + g.pad_right;
  require(h > 0 && w > 0, "input spatial size must be positive");
  require(ph >= kh && pw >= kw, "input spatial size " + std::to_string(h) + "x" +
                                    std::to_string(w) + " (padded " + std::to_string(ph) + "x" +
                                    std::to_string(pw) + ") is smaller than the kernel " +
                                    std::to_string(kh) + "x" + std::to_string(kw));
  g.out_h = static_cast<int32_t>((ph - kh) / sh + 1);
  g.out_w = static_cast<int32_t>((pw - kw) / sw + 1);
  return g;
}

// ---------------------------------------------------------------------------------- Conv2d

// The largest step s > 1 such that a (c, 1, kh, kw) depthwise kernel is zero at every tap whose
// row (rows = true) or column index is not a multiple of s, and its last row / column is one
// (k = (k' - 1) * s + 1), else 1. Skipping exact zeros leaves every sum unchanged.
static int32_t lattice_step(const float* w, int32_t c, int32_t kh, int32_t kw, bool rows) {
  const int32_t k = rows ? kh : kw;
  for (int32_t s = k - 1; s > 1; --s) {
    if ((k - 1) % s) continue;
    bool zero = true;
    for (int64_t i = 0; zero && i < static_cast<int64_t>(c) * kh * kw; ++i) {
      const int32_t pos = rows ? static_cast<int32_t>(i / kw % kh) : static_cast<int32_t>(i % kw);
      zero = pos % s == 0 || w[i] == 0.0f;
    }
    if (zero) return s;
  }
  return 1;
}

Conv2d::Conv2d(const WeightSource& source, const float* bias, int32_t cout, int32_t cin,
               int32_t kh, int32_t kw, int32_t sh, int32_t sw, Padding pad, int32_t groups,
               Activation act, Isa isa)
    : isa_(isa),
      table_(&kernel_table(isa)),
      cout_(cout), cin_(cin), kh_(kh), kw_(kw), sh_(sh), sw_(sw),
      pad_(pad),
      act_(act) {
  require(cout > 0 && cin > 0, "channels must be positive");
  require(kh > 0 && kw > 0, "kernel size must be positive");
  require(sh > 0 && sw > 0, "stride must be positive");
  require(pad.top >= 0 && pad.bottom >= 0 && pad.left >= 0 && pad.right >= 0,
          "padding must be >= 0");
  std::vector<float> scratch;  // weights given as values, where packing needs all of them
  if (groups == cin && cin == cout && groups > 1) {
    kind_ = Kind::depthwise;
    const float* weight = source.all(static_cast<int64_t>(cout) * kh * kw, scratch);
    dil_h_ = lattice_step(weight, cout, kh, kw, true);
    dil_w_ = sw == 1 ? lattice_step(weight, cout, kh, kw, false) : 1;  // see dwconv_simd.h
    pkh_ = (kh - 1) / dil_h_ + 1, pkw_ = (kw - 1) / dil_w_ + 1;
    std::vector<float> taps(static_cast<size_t>(cout) * pkh_ * pkw_);
    for (int32_t c = 0; c < cout; ++c)
      for (int32_t ky = 0; ky < pkh_; ++ky)
        for (int32_t kx = 0; kx < pkw_; ++kx)
          taps[(static_cast<size_t>(c) * pkh_ + ky) * pkw_ + kx] =
              weight[(static_cast<size_t>(c) * kh + ky * dil_h_) * kw + kx * dil_w_];
    const int32_t cb = table_->dwconv_cb;
    packed_ = AlignedFloats(dwconv_packed_floats(cout, pkh_, pkw_, cb));
    pack_dwconv_weights(taps.data(), bias, cout, pkh_, pkw_, cb, packed_.data());
    return;
  }
  require(groups == 1, "groups must be 1 or equal to in_channels == out_channels (depthwise), got " +
                           std::to_string(groups));
  if (cin == kStemCin && kh == kStemK && kw == kStemK && sh == kStemStride && sw == kStemStride) {
    kind_ = Kind::stem;
    packed_ = AlignedFloats(stem_packed_floats(cout, table_->stem_cb));
    const float* weight = source.all(static_cast<int64_t>(cout) * kStemCin * kStemK * kStemK, scratch);
    pack_stem_weights(weight, bias, cout, table_->stem_cb, packed_.data());
    return;
  }
  const int32_t nr = table_->gemm_nr;
  // A 1x1 stride-1 window pads nothing under TF SAME either: TF models' 1x1 convs are GEMMs.
  const bool pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 &&
                         (pad.same || (pad.top == 0 && pad.bottom == 0 && pad.left == 0 &&
                                       pad.right == 0));
  kind_ = pointwise ? Kind::pointwise : Kind::direct;
  const int32_t k = kh * kw * cin;
  if (pointwise) {
    packed_ = gemm_panels(source, bias, k, cout, nr);
    return;
  }
  packed_ = AlignedFloats(gemm_packed_floats(k, cout, nr));
  const float* weight = source.all(static_cast<int64_t>(cout) * k, scratch);
  // im2col rows are (ky, kx, ci) ordered (NHWC patches), so reorder (co, ci, ky, kx) to match.
  std::vector<float> reordered(static_cast<size_t>(cout) * k);
  for (int32_t co = 0; co < cout; ++co)
    for (int32_t ci = 0; ci < cin; ++ci)
      for (int32_t ky = 0; ky < kh; ++ky)
        for (int32_t kx = 0; kx < kw; ++kx)
          reordered[(static_cast<size_t>(co) * kh * kw + ky * kw + kx) * cin + ci] =
              weight[((static_cast<size_t>(co) * cin + ci) * kh + ky) * kw + kx];
  pack_gemm_weights(reordered.data(), bias, k, cout, nr, packed_.data());
}

// The GEMM of output columns [c0, c1) alone: whole panels of the packed weights (the last
// panel keeps its width: it still ends at n), the same sums as the full GEMM.
static GemmArgs gemm_columns(GemmArgs a, int32_t c0, int32_t c1, int32_t nr) {
  require(0 <= c0 && c0 <= c1 && c1 <= a.n && c0 % nr == 0, "output column range");
  a.packed_w += static_cast<int64_t>(c0 / nr) * (static_cast<int64_t>(a.k) + 1) * nr;
  a.c += c0;
  if (a.residual) a.residual += c0;
  a.n = c1 - c0;
  return a;
}

int32_t Conv2d::column_block() const { return table_->gemm_nr; }

void Conv2d::run_pointwise(const float* in, int64_t in_ld, float* out, int64_t out_ld,
                           const float* residual, int64_t res_ld, int64_t pixel_begin,
                           int64_t pixel_end, int32_t col_begin, int32_t col_end) const {
  require(kind_ == Kind::pointwise, "run_pointwise on a conv that is not 1x1");
  GemmArgs a;
  a.m = pixel_end - pixel_begin;
  a.k = cin_, a.n = cout_;
  a.packed_w = packed_.data();
  a.act = act_;
  a.a = in + pixel_begin * in_ld, a.lda = in_ld;
  a.c = out + pixel_begin * out_ld, a.ldc = out_ld;
  a.residual = residual ? residual + pixel_begin * res_ld : nullptr, a.ldr = res_ld;
  table_->gemm(gemm_columns(a, col_begin, col_end, table_->gemm_nr));
}

void Conv2d::run(ImageView in, float* out, int64_t out_ld, const float* residual, int64_t res_ld,
                 int32_t oy_begin, int32_t oy_end) const {
  const WindowGeometry g = geometry(in.h, in.w);
  require(0 <= oy_begin && oy_begin <= oy_end && oy_end <= g.out_h, "output row range out of bounds");
  if (oy_begin == oy_end) return;
  const int64_t first_pixel = static_cast<int64_t>(oy_begin) * g.out_w;
  const int64_t pixels = static_cast<int64_t>(oy_end - oy_begin) * g.out_w;

  // The depthwise and stem kernels take no residual (no MobileNet layer of theirs has one):
  // they run without the activation, then y = act(y + residual) over the rows just written.
  const auto add_residual = [&](int32_t r0, int32_t r1) {
    if (!residual) return;
    const int64_t p0 = static_cast<int64_t>(r0) * g.out_w, p1 = static_cast<int64_t>(r1) * g.out_w;
    if (out_ld == cout_ && res_ld == cout_) {  // dense rows: one pass
      table_->add(out + p0 * out_ld, residual + p0 * res_ld, out + p0 * out_ld, (p1 - p0) * cout_, act_);
      return;
    }
    for (int64_t p = p0; p < p1; ++p)
      table_->add(out + p * out_ld, residual + p * res_ld, out + p * out_ld, cout_, act_);
  };
  if (kind_ == Kind::depthwise) {
    DwconvArgs d;
    d.in = in.data, d.h = in.h, d.w = in.w, d.c = cin_, d.in_ld = in.ld;
    d.out = out, d.out_h = g.out_h, d.out_w = g.out_w, d.out_ld = out_ld;
    d.kh = pkh_, d.kw = pkw_, d.sh = sh_, d.sw = sw_, d.dil_h = dil_h_, d.dil_w = dil_w_;
    d.pad_top = g.pad_top, d.pad_left = g.pad_left;
    d.packed_w = packed_.data();
    d.act = residual ? Activation{} : act_;
    // With a residual (the sandglass block's last depthwise), a few rows at a time, so the
    // add reads them back from L1 rather than from L2 after the whole range is written.
    const int64_t row_bytes = static_cast<int64_t>(g.out_w) * out_ld * sizeof(float);
    const int32_t step = residual ? static_cast<int32_t>(std::max<int64_t>(1, (16 << 10) / row_bytes))
                                  : oy_end - oy_begin;
    for (int32_t r0 = oy_begin; r0 < oy_end; r0 += step) {
      d.oy_begin = r0, d.oy_end = std::min(oy_end, r0 + step);
      table_->dwconv(d);
      add_residual(d.oy_begin, d.oy_end);
    }
    return;
  }

  if (kind_ == Kind::stem) {
    StemArgs d;
    d.in = in.data, d.h = in.h, d.w = in.w, d.in_ld = in.ld;
    d.out = out, d.out_h = g.out_h, d.out_w = g.out_w, d.cout = cout_, d.out_ld = out_ld;
    d.pad_top = g.pad_top, d.pad_left = g.pad_left;
    d.packed_w = packed_.data();
    d.oy_begin = oy_begin, d.oy_end = oy_end;
    d.act = residual ? Activation{} : act_;
    table_->stem(d);
    add_residual(oy_begin, oy_end);
    return;
  }

  if (kind_ == Kind::pointwise)
    return run_pointwise(in.data, in.ld, out, out_ld, residual, res_ld, first_pixel,
                         first_pixel + pixels, 0, cout_);

  GemmArgs a;
  a.k = kh_ * kw_ * cin_, a.n = cout_;
  a.packed_w = packed_.data();
  a.act = act_;

  // Direct convolution: im2col one output row at a time (zeros for padding), then GEMM.
  // Taps are copied with a plain loop: for the stem (3 channels) a memcpy call per tap would
  // cost more than the copy.
  const int32_t k = a.k;
  thread_local std::vector<float> patches;
  patches.resize(static_cast<size_t>(g.out_w) * k);
  for (int32_t oy = oy_begin; oy < oy_end; ++oy) {
    for (int32_t ox = 0; ox < g.out_w; ++ox) {
      float* dst = patches.data() + static_cast<size_t>(ox) * k;
      const int32_t ix0 = ox * sw_ - g.pad_left;
      const bool cols_in = ix0 >= 0 && ix0 + kw_ <= in.w && in.ld == cin_;
      for (int32_t ky = 0; ky < kh_; ++ky) {
        const int32_t iy = oy * sh_ - g.pad_top + ky;
        const bool row_in = iy >= 0 && iy < in.h;
        if (row_in && cols_in) {  // the kernel row is kw * cin contiguous floats
          const float* src = in.data + (static_cast<int64_t>(iy) * in.w + ix0) * cin_;
          for (int32_t i = 0; i < kw_ * cin_; ++i) dst[i] = src[i];
          dst += kw_ * cin_;
          continue;
        }
        for (int32_t kx = 0; kx < kw_; ++kx, dst += cin_) {
          const int32_t ix = ox * sw_ - g.pad_left + kx;
          if (!row_in || ix < 0 || ix >= in.w) {
            for (int32_t c = 0; c < cin_; ++c) dst[c] = 0.0f;
          } else {
            const float* src = in.data + (static_cast<int64_t>(iy) * in.w + ix) * in.ld;
            for (int32_t c = 0; c < cin_; ++c) dst[c] = src[c];
          }
        }
      }
    }
    const int64_t row_pixel = static_cast<int64_t>(oy) * g.out_w;
    a.m = g.out_w;
    a.a = patches.data(), a.lda = k;
    a.c = out + row_pixel * out_ld, a.ldc = out_ld;
    a.residual = residual ? residual + row_pixel * res_ld : nullptr, a.ldr = res_ld;
    table_->gemm(a);
  }
}

// ---------------------------------------------------------------------------------- Linear

Linear::Linear(const WeightSource& weight, const float* bias, int32_t out_features, int32_t in_features,
               Activation act, Isa isa)
    : table_(&kernel_table(isa)), out_(out_features), in_(in_features), act_(act) {
  require(out_features > 0 && in_features > 0, "features must be positive");
  packed_ = gemm_panels(weight, bias, in_, out_, table_->gemm_nr);
}

Linear::Linear(const QuantizedWeights& weight, const float* bias, int32_t out_features,
               int32_t in_features, Activation act, Isa isa)
    : table_(&kernel_table(isa)), out_(out_features), in_(in_features), act_(act), is_q8_(true),
      q8_signed_(weight.is_signed) {
  require(out_features > 0 && in_features > 0, "features must be positive");
  require(weight.q && weight.scale && weight.zero,
          "8-bit weights need values, scales and zero points");
  packed_ = AlignedFloats(3 * static_cast<int64_t>(out_));
  float* p = packed_.data();
  for (int32_t j = 0; j < out_; ++j) {
    const int32_t c = weight.per_feature ? j : 0;
    p[j] = weight.scale[c];
    p[out_ + j] = static_cast<float>(weight.zero[c]);
    p[2 * out_ + j] = bias ? bias[j] : 0.0f;
  }
  const int64_t bytes = static_cast<int64_t>(out_) * in_, floats = (bytes + 3) / 4;
  if (weight.owner) {  // used where it lies
    q8_ = AlignedFloats::borrowed(reinterpret_cast<const float*>(weight.q), floats, weight.owner);
  } else {
    q8_ = AlignedFloats(floats);
    std::memcpy(q8_.data(), weight.q, static_cast<size_t>(bytes));
  }
}

void Linear::run(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows) const {
  run(x, ldx, y, ldy, rows, 0, out_);
}

int32_t Linear::column_block() const { return table_->gemm_nr; }

void Linear::run(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows,
                 int32_t col_begin, int32_t col_end) const {
  if (is_q8_) {
    require(0 <= col_begin && col_begin <= col_end && col_end <= out_ &&
                col_begin % table_->gemm_nr == 0, "output column range");
    GemvQ8Args a;
    a.k = in_;
    a.q = reinterpret_cast<const unsigned char*>(q8_.data());
    a.is_signed = q8_signed_;
    a.scale = packed_.data(), a.zero = a.scale + out_, a.bias = a.zero + out_;
    a.row_begin = col_begin, a.row_end = col_end;
    a.act = act_;
    a.x = x, a.y = y, a.vectors = rows, a.ldx = ldx, a.ldy = ldy;
    table_->gemv_q8(a);
    return;
  }
  GemmArgs a;
  a.m = rows, a.k = in_, a.n = out_;
  a.a = x, a.lda = ldx;
  a.packed_w = packed_.data();
  a.c = y, a.ldc = ldy;
  a.act = act_;
  a.gemv_order = true;  // each row's bits as alone, in a batch of any size
  table_->gemm(gemm_columns(a, col_begin, col_end, table_->gemm_nr));
}

// --------------------------------------------------------------------------- SqueezeExcite

SqueezeExcite::SqueezeExcite(const WeightSource& w1, const float* b1, const WeightSource& w2,
                             const float* b2,
                             int32_t channels, int32_t squeeze, Activation inner,
                             Activation gate, Isa isa)
    : table_(&kernel_table(isa)),
      reduce_(w1, b1, squeeze, channels, inner, isa),
      expand_(w2, b2, channels, squeeze, gate, isa) {}

SqueezeExcite::SqueezeExcite(Linear reduce, Linear expand, Isa isa)
    : table_(&kernel_table(isa)), reduce_(std::move(reduce)), expand_(std::move(expand)) {
  require(reduce_.out_features() == expand_.in_features() &&
              expand_.out_features() == reduce_.in_features(),
          "squeeze-excite layers do not fit together");
}

void SqueezeExcite::run(const float* x, int64_t pixels, int64_t ld, float* y,
                        int64_t y_ld) const {
  const int32_t c = channels();
  thread_local std::vector<float> gates;
  gates.resize(static_cast<size_t>(c));
  gate(x, pixels, ld, gates.data());
  if (y == x || y_ld == ld) {
    table_->mul_channels(x, gates.data(), y, pixels, c, ld);
  } else {
    for (int64_t p = 0; p < pixels; ++p)
      table_->mul_channels(x + p * ld, gates.data(), y + p * y_ld, 1, c, c);
  }
}

void SqueezeExcite::gate(const float* x, int64_t pixels, int64_t ld, float* gate) const {
  const int32_t c = channels(), s = squeeze();
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(c + s));
  float* pooled = scratch.data();
  float* hidden = pooled + c;
  table_->global_avg_pool(x, pixels, c, ld, pooled);
  reduce_.run(pooled, c, hidden, s, 1);
  expand_.run(hidden, s, gate, c, 1);
}

// ---------------------------------------------------------------------------------- Pool2d

Pool2d::Pool2d(PoolKind kind, int32_t kh, int32_t kw, int32_t sh, int32_t sw, Padding pad,
               bool count_include_pad, Isa isa)
    : table_(&kernel_table(isa)), kind_(kind), kh_(kh), kw_(kw), sh_(sh), sw_(sw), pad_(pad),
      count_include_pad_(count_include_pad) {
  require(kh > 0 && kw > 0 && sh > 0 && sw > 0, "pool kernel and stride must be positive");
}

void Pool2d::run(ImageView in, int32_t channels, float* out, int64_t out_ld, int32_t oy_begin,
                 int32_t oy_end) const {
  const WindowGeometry g = geometry(in.h, in.w);
  require(0 <= oy_begin && oy_begin <= oy_end && oy_end <= g.out_h, "output row range out of bounds");
  PoolArgs p;
  p.kind = kind_;
  p.in = in.data, p.h = in.h, p.w = in.w, p.c = channels, p.in_ld = in.ld;
  p.out = out, p.out_h = g.out_h, p.out_w = g.out_w, p.out_ld = out_ld;
  p.kh = kh_, p.kw = kw_, p.sh = sh_, p.sw = sw_, p.pad_top = g.pad_top, p.pad_left = g.pad_left;
  p.count_include_pad = count_include_pad_;
  p.oy_begin = oy_begin, p.oy_end = oy_end;
  table_->pool(p);
}

}  // namespace tmn
