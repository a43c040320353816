// avx512 depthwise convolution: one vector of channels, tiles of up to 16 output pixels (32 zmm
// registers; see dwconv_simd.h).
#include "kernels/dwconv/dwconv_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(kAvx512DwconvCB == Vec::kLanes, "dwconv_simd packs one vector per channel block");
void dwconv_avx512(const DwconvArgs& args) { dwconv_simd<16>(args); }
}  // namespace tmn
