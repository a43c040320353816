// Instruction-set selection: what this CPU supports, which kernel table is in use, and
// TINYMNET_ISA to force one (so every path stays testable on one machine).
#pragma once

#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace tmn {

enum class Isa { scalar, avx2, avx512, neon };

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name.
Isa parse_isa(const std::string& name);
// Compiled into this build and supported by this CPU (and OS register state).
bool isa_available(Isa isa);
std::vector<Isa> available_isas();
Isa best_isa();

// The ISA new ops bind to. Starts as TINYMNET_ISA if set (an unknown or unavailable value
// throws when first read, with the reason), else best_isa().
Isa current_isa();
// Throws std::invalid_argument if `isa` is not available here.
void set_current_isa(Isa isa);

const KernelTable& kernel_table(Isa isa);

}  // namespace tmn
