// Ops: validated layer objects that own packed weights and call the kernels of the ISA they
// were created for. The Python API (python/bindings.cc) and the compiled model plan both use
// these; they work on one image and a range of output rows, so callers can split the work.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/isa.h"

namespace tmn {

// Where a compiled plan's packed weights and arena live: a few large 2 MiB-aligned chunks
// advised as transparent huge pages, handed out by bump allocation and freed together.
// Loading a model is mostly first writes to fresh memory; with 4 KiB pages a page fault
// per 4 KiB cost more than the packing itself (one fault per 2 MiB instead).
class WeightPool {
 public:
  WeightPool() = default;
  WeightPool(const WeightPool&) = delete;
  WeightPool& operator=(const WeightPool&) = delete;
  ~WeightPool();
  float* allocate(int64_t count);  // 64-byte aligned
  int64_t allocated_bytes() const { return allocated_; }
  // Packed weights the ops use in place from a mapped file instead (see gemm_panels, ops.cc).
  int64_t mapped_bytes() const { return mapped_; }
  void add_mapped(int64_t bytes) { mapped_ += bytes; }

 private:
  std::vector<void*> chunks_;
  int64_t allocated_ = 0, mapped_ = 0;
  char* next_ = nullptr;
  size_t left_ = 0;
};

// While alive, AlignedFloats created on this thread come from `pool` (null: the heap).
class WeightPoolScope {
 public:
  explicit WeightPoolScope(WeightPool* pool);
  ~WeightPoolScope();
  WeightPoolScope(const WeightPoolScope&) = delete;
  WeightPoolScope& operator=(const WeightPoolScope&) = delete;

 private:
  WeightPool* previous_;
};

// Frees heap storage; storage owned by a WeightPool is freed with the pool.
struct FreeUnlessPooled {
  bool pooled;
  void operator()(float* p) const {
    if (!pooled) std::free(p);
  }
};

// 64-byte aligned float storage for packed weights and scratch (from the current
// WeightPool if one is in scope; `heap` = true forces the heap, for short-lived buffers).
class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(int64_t count, bool heap = false);
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  int64_t size() const { return size_; }
  // Read-only storage owned elsewhere (weights inside a mapped .tmn file), kept alive by
  // `owner` for as long as this object lives; counted as mapped by the current WeightPool.
  static AlignedFloats borrowed(const float* data, int64_t count, std::shared_ptr<const void> owner);

 private:
  std::unique_ptr<float[], FreeUnlessPooled> data_{nullptr, FreeUnlessPooled{false}};
  int64_t size_ = 0;
  std::shared_ptr<const void> owner_;
};

// A GEMM weight W (n, k) stored in pack_gemm_weights's layout for panel width nr, bias rows
// included (a .tmn file may store it so), and what keeps that memory alive.
struct PackedGemmWeights {
  const float* panels = nullptr;
  int32_t n = 0, k = 0, nr = 0;
  std::shared_ptr<const void> owner;
};

// The weights an op's constructor packs: float32 values, or a function writing values
// [first, first + count) of them as float32 (in the constructor's weight layout). The plan's
// 8-bit weights come that way, dequantized one GEMM panel at a time into a small buffer that
// stays in cache: no float32 copy of a whole tensor is ever made.
struct WeightSource {
  const float* data = nullptr;
  std::function<void(int64_t first, int64_t count, float* out)> values;
  WeightSource(const float* floats) : data(floats) {}  // NOLINT: float32 weights convert
  explicit WeightSource(std::function<void(int64_t, int64_t, float*)> f) : values(std::move(f)) {}
  // Optionally, the same weights already packed for a GEMM (see gemm_panels in ops.cc).
  PackedGemmWeights packed;
  // The first `count` values: `data`, or the values written into `scratch`.
  const float* all(int64_t count, std::vector<float>& scratch) const;
};

struct Padding {
  int32_t top = 0, bottom = 0, left = 0, right = 0;
  bool same = false;  // TF "SAME": resolved from the input size at run time
};

struct WindowGeometry {
  int32_t out_h, out_w;
  int32_t pad_top, pad_bottom, pad_left, pad_right;
};

// Output size and resolved padding of a kh x kw / sh x sw window over an h x w input.
// Throws std::invalid_argument if the window does not fit.
WindowGeometry window_geometry(int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t sh,
                               int32_t sw, const Padding& pad);

// A view of one NHWC image (or rows of it): pixel (y, x) at data + (y * w + x) * ld.
struct ImageView {
  const float* data;
  int32_t h, w;
  int64_t ld;
};

class Conv2d {
 public:
  // stem: 3x3 stride-2 conv of 3 channels (the MobileNets' first layer), any padding.
  enum class Kind { pointwise, depthwise, stem, direct };

  // weight: PyTorch layout (cout, cin / groups, kh, kw); bias: cout floats or null.
  // groups must be 1, or equal cin == cout (depthwise).
  Conv2d(const WeightSource& weight, const float* bias, int32_t cout, int32_t cin, int32_t kh,
         int32_t kw, int32_t sh, int32_t sw, Padding pad, int32_t groups, Activation act,
         Isa isa);

  Kind kind() const { return kind_; }
  Isa isa() const { return isa_; }
  int32_t cin() const { return cin_; }
  int32_t cout() const { return cout_; }
  int32_t kernel_h() const { return kh_; }
  int32_t stride_h() const { return sh_; }
  WindowGeometry geometry(int32_t h, int32_t w) const {
    return window_geometry(h, w, kh_, kw_, sh_, sw_, pad_);
  }

  // Computes output rows [oy_begin, oy_end) of one image into out (row stride out_w * out_ld,
  // cout channels written at out + pixel * out_ld). residual (optional) has the output's
  // shape with pixel stride res_ld; y = act(conv + bias + residual).
  void run(ImageView in, float* out, int64_t out_ld, const float* residual, int64_t res_ld,
           int32_t oy_begin, int32_t oy_end) const;
  // Pointwise only: output pixels [pixel_begin, pixel_end) and channels [col_begin, col_end)
  // (col_begin a multiple of column_block()), so a thread pool can split a layer with few
  // rows by pixels, or a 1x1 image by channels. Pointers and strides as for run().
  void run_pointwise(const float* in, int64_t in_ld, float* out, int64_t out_ld,
                     const float* residual, int64_t res_ld, int64_t pixel_begin,
                     int64_t pixel_end, int32_t col_begin, int32_t col_end) const;
  int32_t column_block() const;

 private:
  Kind kind_;
  Isa isa_;
  const KernelTable* table_;
  int32_t cout_, cin_, kh_, kw_, sh_, sw_;
  // Depthwise only: the taps actually packed. A dense kernel whose nonzero taps all sit on a
  // lattice of step dil (a dilated conv an importer made dense, e.g. DeepLab's 9x9 = 3x3 at
  // rate 4) packs just those: (kh_ - 1) / dil_h + 1 rows of them, dil_h apart.
  int32_t pkh_ = 0, pkw_ = 0, dil_h_ = 1, dil_w_ = 1;
  Padding pad_;
  Activation act_;
  AlignedFloats packed_;
};

// 8-bit weights (out, in), uint8 or int8, real value (q - zero[c]) * scale[c] with c the
// output feature (per_feature) or one pair for all.
struct QuantizedWeights {
  const unsigned char* q = nullptr;  // (out, in) row major
  bool is_signed = false;
  const float* scale = nullptr;
  const int32_t* zero = nullptr;
  bool per_feature = false;
  // What keeps q alive where it lies (a mapped .tmn file): the op then reads it in place.
  // Null: the op keeps a copy.
  std::shared_ptr<const void> owner;
};

// y = act(x W^T + b) for a batch of rows: x (m, in) with row stride ldx, y (m, out) / ldy.
class Linear {
 public:
  // float32 weights, packed into GEMM panels.
  Linear(const WeightSource& weight, const float* bias, int32_t out_features, int32_t in_features,
         Activation act, Isa isa);
  // 8-bit weights kept 8-bit (KernelTable::gemv_q8, one row at a time): for the layers that see
  // one pixel, which would otherwise stream 4x the bytes once per image. Read in place when
  // weight.owner keeps them alive.
  Linear(const QuantizedWeights& weight, const float* bias, int32_t out_features,
         int32_t in_features, Activation act, Isa isa);
  void run(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows) const;
  // Output features [col_begin, col_end) only (col_begin a multiple of column_block()).
  void run(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int32_t col_begin,
           int32_t col_end) const;
  int32_t column_block() const;
  int32_t in_features() const { return in_; }
  int32_t out_features() const { return out_; }

 private:
  const KernelTable* table_;
  int32_t out_, in_;
  Activation act_;
  AlignedFloats packed_;    // GEMM panels, or for 8-bit weights each output's scale, zero
                            // point and bias (3 x out_features floats)
  AlignedFloats q8_;        // 8-bit weights (out, in) as bytes: borrowed from the file, or a copy
  bool is_q8_ = false;
  bool q8_signed_ = false;
};

// Squeeze-and-excite: y = x * gate(W2 inner(W1 mean_hw(x) + b1) + b2), per image.
class SqueezeExcite {
 public:
  SqueezeExcite(const WeightSource& w1, const float* b1, const WeightSource& w2, const float* b2,
                int32_t channels, int32_t squeeze, Activation inner, Activation gate, Isa isa);
  // From its two fully connected layers (reduce: channels -> squeeze with the inner
  // activation, expand: back with the gate), float32 or 8-bit: both see one pixel.
  SqueezeExcite(Linear reduce, Linear expand, Isa isa);
  int32_t channels() const { return reduce_.in_features(); }
  int32_t squeeze() const { return reduce_.out_features(); }
  // One image of `pixels` pixels (stride ld); y may alias x.
  void run(const float* x, int64_t pixels, int64_t ld, float* y, int64_t y_ld) const;
  // run() in parts, so a thread pool can split each: the channels() gates of one image are
  // global_avg_pool -> reduce() -> expand() (each Linear applies its activation), then
  // y = x * gate is a KernelTable::mul_channels.
  void gate(const float* x, int64_t pixels, int64_t ld, float* gate) const;
  const Linear& reduce() const { return reduce_; }
  const Linear& expand() const { return expand_; }

 private:
  const KernelTable* table_;
  Linear reduce_, expand_;
};

class Pool2d {
 public:
  Pool2d(PoolKind kind, int32_t kh, int32_t kw, int32_t sh, int32_t sw, Padding pad,
         bool count_include_pad, Isa isa);
  WindowGeometry geometry(int32_t h, int32_t w) const {
    return window_geometry(h, w, kh_, kw_, sh_, sw_, pad_);
  }
  void run(ImageView in, int32_t channels, float* out, int64_t out_ld, int32_t oy_begin,
           int32_t oy_end) const;

 private:
  const KernelTable* table_;
  PoolKind kind_;
  int32_t kh_, kw_, sh_, sw_;
  Padding pad_;
  bool count_include_pad_;
};

}  // namespace tmn
