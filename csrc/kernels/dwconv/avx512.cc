// avx512 depthwise convolution: 2 vectors of channels per step (see dwconv_simd.h).
#include "kernels/dwconv/dwconv_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(2 * Vec::kLanes == kAvx512DwconvCB, "channel block must match packing");
void dwconv_avx512(const DwconvArgs& args) { dwconv_simd<2>(args); }
}  // namespace tmn
