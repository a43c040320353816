// neon depthwise convolution: 4 vectors of channels per step (see dwconv_simd.h).
#include "kernels/dwconv/dwconv_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(4 * Vec::kLanes == kNeonDwconvCB, "channel block must match packing");
void dwconv_neon(const DwconvArgs& args) { dwconv_simd<4>(args); }
}  // namespace tmn
