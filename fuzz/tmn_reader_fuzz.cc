// libFuzzer target for the C++-only .tmn reader (csrc/runtime/tmn_reader.cc), which
// tinymnet._C does not expose, so atheris cannot reach it. fuzz/run.py builds it with clang
// (-fsanitize=fuzzer,address,undefined) and runs it as the target "tmn-cpp".
// Expected: a std::invalid_argument whose message starts with the file's path. A finding:
// any other exception (std::bad_alloc: a size field trusted before it was checked), a
// sanitizer report, a crash or a hang.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "runtime/tmn_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/tinymnet-fuzz-tmn-cpp-" + std::to_string(getpid()) + ".tmn";
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  for (bool verify : {true, false}) {  // without the CRC the JSON and tensor table are reached
    try {
      tmn::TmnFile model(path, verify);
      (void)model.params().size();
    } catch (const std::invalid_argument& e) {
      if (std::string(e.what()).compare(0, path.size(), path) != 0) {
        std::fprintf(stderr, "error does not name the file: %s\n", e.what());
        std::abort();
      }
    }
  }
  return 0;
}
