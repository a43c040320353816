// avx512 stem convolution: tiles of 24 pixels x 1 vector or 12 x 2 (32 zmm registers); see
// stem_simd.h.
#include "kernels/stem/stem_simd.h"
#include "kernels/isa_kernels.h"

namespace tmn {
static_assert(kAvx512StemCB == Vec::kLanes, "stem_simd packs one vector per channel block");
void stem_avx512(const StemArgs& args) { stem_simd<24, 12>(args); }
}  // namespace tmn
