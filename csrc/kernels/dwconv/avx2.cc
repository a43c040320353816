// avx2 depthwise convolution: one vector of channels, tiles of up to 8 output pixels (16 ymm
// registers: 8 accumulators + 5 weights + 1 input; see dwconv_simd.h).
#include "kernels/dwconv/dwconv_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(kAvx2DwconvCB == Vec::kLanes, "dwconv_simd packs one vector per channel block");
void dwconv_avx2(const DwconvArgs& args) { dwconv_simd<8>(args); }
}  // namespace tmn
