// avx2 stem convolution: tiles of 12 pixels x 1 vector or 6 x 2 (16 ymm registers); see
// stem_simd.h.
#include "kernels/stem/stem_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(kAvx2StemCB == Vec::kLanes, "stem_simd packs one vector per channel block");
void stem_avx2(const StemArgs& args) { stem_simd<12, 6>(args); }
}  // namespace tmn
