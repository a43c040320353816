// The kernel contract: argument structs, packed-weight layouts and the per-ISA function table.
//
// Every kernel works on NHWC float32 data. "ld" (leading dimension) is the number of floats
// between two consecutive pixels, so a kernel can read a channel slice of a wider tensor or
// write at a channel offset into a wider buffer (concatenation without copies). Kernels that
// produce rows take a range of output rows, so a plan can split work over threads or tiles.
//
// Each ISA (scalar reference, AVX2+FMA, AVX-512, NEON) provides the same functions; the scalar
// one in ref.cc files is the plain reference the vector versions are tested against.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmn {

enum class ActKind : int32_t { none = 0, relu = 1, relu6 = 2, hardswish = 3, hardsigmoid = 4 };

// gate(x) = clamp(alpha * x + beta, 0, 1); hardsigmoid(x) = gate(x), hardswish(x) = x * gate(x).
// The defaults give torch's relu6(x + 3) / 6; ONNX HardSigmoid uses alpha = 0.2, beta = 0.5.
struct Activation {
  ActKind kind = ActKind::none;
  float alpha = 1.0f / 6.0f;
  float beta = 0.5f;
};

inline float apply_activation(float x, const Activation& a) {
  switch (a.kind) {
    case ActKind::none: return x;
    case ActKind::relu: return x > 0.0f ? x : 0.0f;
    case ActKind::relu6: return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    case ActKind::hardsigmoid:
    case ActKind::hardswish: {
      float g = a.alpha * x + a.beta;
      g = g < 0.0f ? 0.0f : (g > 1.0f ? 1.0f : g);
      return a.kind == ActKind::hardswish ? x * g : g;
    }
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// Pointwise (1x1) convolution / fully connected layer as a GEMM on pre-packed weights:
//   C[m, n] = act(sum_k A[m, k] * W[n, k] + bias[n] + R[m, n])      (R optional)
// Packed layout for panel width NR (the ISA's choice, even): ceil(N / NR) panels; panel p
// starts at p * (K + 1) * NR and holds bias[p*NR .. p*NR+width) then K rows of `width` weights
// W[p*NR + j, k], zero padded past N. width = gemm_panel_width(N, NR, p*NR): NR, except a last
// panel covering at most NR / 2 columns is NR / 2 wide (N = 16 with NR = 32 needs half the FMAs).
struct GemmArgs {
  int64_t m = 0;            // rows (pixels) to compute
  int32_t k = 0;            // input channels
  int32_t n = 0;            // output channels
  const float* a = nullptr; // m rows, row i at a + i * lda
  int64_t lda = 0;
  const float* packed_w = nullptr;
  float* c = nullptr;       // m rows, row i at c + i * ldc, n floats written per row
  int64_t ldc = 0;
  const float* residual = nullptr;  // optional, row i at residual + i * ldr
  int64_t ldr = 0;
  Activation act;
  // Sum every row in the order a one-row GEMM (a GEMV) sums it, so a row gets the same bits
  // in a batch as alone (fully connected layers run on a batch of images at once).
  bool gemv_order = false;
};

inline int32_t gemm_panel_width(int32_t n, int32_t nr, int32_t n0) {
  return n - n0 <= nr / 2 ? nr / 2 : nr;
}
inline int64_t gemm_packed_floats(int32_t k, int32_t n, int32_t nr) {
  const int32_t last = (n - 1) / nr * nr;  // first column of the last panel
  return (static_cast<int64_t>(last) + gemm_panel_width(n, nr, last)) *
         (static_cast<int64_t>(k) + 1);
}
// Bytes of packed weights a GEMM keeps in L2 while all row tiles pass over them: a quarter of
// this core's L2 (Xeon 2 MB -> 512 KB, Zen 3 512 KB -> 128 KB; 1 MB assumed when the OS does
// not say). TINYMNET_GEMM_BLOCK_KB overrides it (tuning). Read once, defined in runtime/isa.cc.
int64_t gemm_weight_block_bytes();
// w is (N, K) row major (PyTorch (Cout, Cin) for a 1x1 conv); bias may be null (zeros).
void pack_gemm_weights(const float* w, const float* bias, int32_t k, int32_t n, int32_t nr,
                       float* packed);
// The inverse: elements [first, first + count) of w (N, K) row major, read from packed
// panels of width nr (a .tmn file may store a GEMM weight packed; see formats/tmn.py).
void unpack_gemm_weights(const float* packed, int32_t k, int32_t n, int32_t nr, int64_t first,
                         int64_t count, float* out);

// ---------------------------------------------------------------------------------------------
// Depthwise convolution (multiplier 1) of one image, any kernel size, stride and padding.
// Packed layout for channel block CB (the ISA's choice): ceil(C / CB) blocks; block b holds
// bias[b*CB .. b*CB+CB) then KH*KW taps (row-major ky, kx) of CB weights, zero padded past C.
struct DwconvArgs {
  const float* in = nullptr;   // pixel (y, x) at in + (y * w + x) * in_ld
  int32_t h = 0, w = 0, c = 0;
  int64_t in_ld = 0;
  float* out = nullptr;        // pixel (oy, ox) at out + (oy * out_w + ox) * out_ld
  int32_t out_h = 0, out_w = 0;
  int64_t out_ld = 0;
  int32_t kh = 3, kw = 3, sh = 1, sw = 1;
  // Dilation: tap (ky, kx) reads input row iy0 + ky * dil_h, column ix0 + kx * dil_w
  // (kh, kw count the taps). dil_w > 1 needs sw == 1.
  int32_t dil_h = 1, dil_w = 1;
  int32_t pad_top = 0, pad_left = 0;  // bottom/right padding is implied by out_h/out_w
  const float* packed_w = nullptr;
  int32_t oy_begin = 0, oy_end = 0;   // output rows [oy_begin, oy_end) are computed
  Activation act;
};

inline int64_t dwconv_packed_floats(int32_t c, int32_t kh, int32_t kw, int32_t cb) {
  return static_cast<int64_t>((c + cb - 1) / cb) * cb * (1 + static_cast<int64_t>(kh) * kw);
}
// w is (C, 1, KH, KW) (PyTorch layout); bias may be null.
void pack_dwconv_weights(const float* w, const float* bias, int32_t c, int32_t kh, int32_t kw,
                         int32_t cb, float* packed);

// ---------------------------------------------------------------------------------------------
// Stem convolution: the first layer of the MobileNets, a dense 3x3 stride-2 convolution of a
// 3-channel image (any padding, any number of output channels), with fused bias + activation.
// Packed layout for channel block CB (the ISA's choice): ceil(Cout / CB) blocks; block b holds
// bias[b*CB .. b*CB+CB) then 27 taps in (ky, kx, ci) order of CB weights, zero padded past Cout.
constexpr int32_t kStemCin = 3, kStemK = 3, kStemStride = 2;
struct StemArgs {
  const float* in = nullptr;   // pixel (y, x) at in + (y * w + x) * in_ld, 3 channels
  int32_t h = 0, w = 0;
  int64_t in_ld = 0;
  float* out = nullptr;        // pixel (oy, ox) at out + (oy * out_w + ox) * out_ld
  int32_t out_h = 0, out_w = 0, cout = 0;
  int64_t out_ld = 0;
  int32_t pad_top = 0, pad_left = 0;  // bottom/right padding is implied by out_h/out_w
  const float* packed_w = nullptr;
  int32_t oy_begin = 0, oy_end = 0;   // output rows [oy_begin, oy_end) are computed
  Activation act;
};

inline int64_t stem_packed_floats(int32_t cout, int32_t cb) {
  return static_cast<int64_t>((cout + cb - 1) / cb) * cb * (1 + kStemK * kStemK * kStemCin);
}
// w is (Cout, 3, 3, 3) (PyTorch layout); bias may be null.
void pack_stem_weights(const float* w, const float* bias, int32_t cout, int32_t cb,
                       float* packed);

// ---------------------------------------------------------------------------------------------
// GEMV on 8-bit weights: y[j] = act(bias[j] + scale[j] * sum_k x[k] * (q[j, k] - zero[j])).
// For layers that see one pixel (classifiers, V3's last 1x1 conv, squeeze-excite FCs) whose
// weights a file stores in 8 bits: the weights stay 8-bit in memory, 4x fewer bytes for a
// kernel that only streams them. q is row-major (n, k), as a .tmn file stores a linear or 1x1
// conv weight quantized per output channel or per tensor, so the kernel reads it where it lies
// in the mapped file: nothing to pack, no fresh memory at load. Each output is the dot product
// of x with its row. q - zero is exact in float32 (|q - zero| <= 255) and the scale applies
// once per sum, so results differ from the float32 GEMM on dequantized weights only by
// rounding.
struct GemvQ8Args {
  int32_t k = 0;
  const float* x = nullptr;           // k floats
  const unsigned char* q = nullptr;   // row j (k bytes) at q + j * k
  bool is_signed = false;             // int8 (else uint8) values
  const float* scale = nullptr;       // per output j: scale[j], zero[j] (the zero point, an
  const float* zero = nullptr;        // integer, as a float) and bias[j] (bias may be null)
  const float* bias = nullptr;
  float* y = nullptr;                 // outputs [row_begin, row_end) written
  int32_t row_begin = 0, row_end = 0;
  Activation act;
  // `vectors` inputs x + v * ldx, each to y + v * ldy: every group of weight rows is read from
  // memory once and used for all of them while it is in L1 (a batch's classifier layer).
  int64_t vectors = 1, ldx = 0, ldy = 0;
};

// ---------------------------------------------------------------------------------------------
// Pooling over one image (NHWC, same ld conventions as DwconvArgs).
enum class PoolKind : int32_t { average = 0, max = 1 };
struct PoolArgs {
  PoolKind kind = PoolKind::average;
  const float* in = nullptr;
  int32_t h = 0, w = 0, c = 0;
  int64_t in_ld = 0;
  float* out = nullptr;
  int32_t out_h = 0, out_w = 0;
  int64_t out_ld = 0;
  int32_t kh = 1, kw = 1, sh = 1, sw = 1;
  int32_t pad_top = 0, pad_left = 0;
  bool count_include_pad = false;  // average only: divide by kh*kw (torch default) or by the
                                   // number of in-bounds taps (TF "SAME")
  int32_t oy_begin = 0, oy_end = 0;
};

// ---------------------------------------------------------------------------------------------
// The per-ISA function table.
struct KernelTable {
  const char* name;
  int32_t gemm_nr;      // panel width of pack_gemm_weights for gemm
  int32_t dwconv_cb;    // channel block of pack_dwconv_weights for dwconv
  int32_t stem_cb;      // channel block of pack_stem_weights for stem
  void (*gemm)(const GemmArgs&);
  void (*gemv_q8)(const GemvQ8Args&);
  void (*dwconv)(const DwconvArgs&);
  void (*stem)(const StemArgs&);
  void (*pool)(const PoolArgs&);
  // out[c] = mean over `pixels` pixels of in[p * ld + c], for c < channels.
  void (*global_avg_pool)(const float* in, int64_t pixels, int32_t channels, int64_t ld,
                          float* out);
  // y[i] = act(x[i]) for i < count (y may alias x).
  void (*activation)(const float* x, float* y, int64_t count, const Activation& act);
  // y[i] = act(a[i] + b[i]) (y may alias a or b).
  void (*add)(const float* a, const float* b, float* y, int64_t count, const Activation& act);
  // y[p * ld + c] = x[p * ld + c] * scale[c] for p < pixels, c < channels (y may alias x).
  void (*mul_channels)(const float* x, const float* scale, float* y, int64_t pixels,
                       int32_t channels, int64_t ld);
};

}  // namespace tmn
