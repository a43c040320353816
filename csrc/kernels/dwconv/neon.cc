// neon depthwise convolution: one vector of channels, tiles of up to 16 output pixels (32 q
// registers; see dwconv_simd.h).
#include "kernels/dwconv/dwconv_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(kNeonDwconvCB == Vec::kLanes, "dwconv_simd packs one vector per channel block");
void dwconv_neon(const DwconvArgs& args) { dwconv_simd<16>(args); }
}  // namespace tmn
