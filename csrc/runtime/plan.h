// A compiled model: the graph's nodes turned into ops with packed weights, every activation
// tensor given an offset in one arena by a liveness-based planner, and a run() that executes
// all steps in C++ (splitting each step's output rows over a thread pool).
//
// A chain of convs whose intermediate outputs each have one reader (expand 1x1 -> depthwise
// -> project 1x1, or the stem -> the first block) runs as one fused step, band by band of
// output rows: each intermediate lives only as a sliding window of the rows the next conv
// needs, so the widest tensors of an inverted-residual network never exist whole.
//
// The plan is built from the graph JSON that tinymnet.graph.graph_to_dict writes (the same
// JSON a .tmn header holds), after the Python passes have folded BatchNorm and fused
// activations/residuals, so a C++-only program can build it from a .tmn file too.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "runtime/json.h"
#include "runtime/threadpool.h"

namespace tmn {

// A parameter: float32 values, or 8-bit weights dequantized only while the plan packs them
// (real = (q - zero_point[c]) * scale[c], c the index along the quantization axis). The
// caller keeps the data alive while the plan is built; ops copy what they need when they pack.
struct ParamView {
  const float* data = nullptr;  // float32 values (null for 8-bit weights)
  std::vector<int64_t> shape;
  const uint8_t* q = nullptr;   // 8-bit values (uint8, or int8 when q_signed)
  bool q_signed = false;
  const float* scale = nullptr;         // q_channels values
  const int32_t* zero_point = nullptr;  // q_channels values
  int64_t q_channels = 1;  // 1: one scale for the whole tensor
  int64_t q_inner = 1;     // elements after the axis: element i has channel (i / q_inner) % q_channels
  PackedGemmWeights packed;  // float32 weights stored as GEMM panels instead (data null)
  std::shared_ptr<const void> owner;  // keeps data / q / scale / zero_point alive (the mapping)

  int64_t size() const;
  bool present() const { return data || q || packed.panels; }
  // Elements [first, first + count) as float32 into out (8-bit values dequantized in float32
  // arithmetic, exactly as tinymnet.formats.tmn.QuantizedTensor.dequantize; packed ones
  // gathered from their panels).
  void dequantize(int64_t first, int64_t count, float* out) const;
  // The values as float32: `data`, or the others written into `scratch`.
  const float* floats(AlignedFloats& scratch) const;
  // The weights for an op's constructor: `data`, or the values as the op asks for them (the
  // source points at this view; packed weights are offered as they are, too).
  WeightSource source() const;
};
using ParamMap = std::map<std::string, ParamView>;

class Plan {
 public:
  // Throws std::invalid_argument (naming the node) for anything it cannot run.
  // fuse_chains = false materialises every tensor and runs concats as copies (to compare
  // memory and results).
  Plan(const json::Value& graph, const ParamMap& params, int threads, Isa isa,
       bool fuse_chains = true);
  ~Plan();

  // One image's input (h, w, c) and output (h, w, c) dims; 2-D outputs are (1, 1, c).
  const std::vector<int64_t>& input_dims() const { return input_dims_; }
  const std::vector<int64_t>& output_dims() const { return output_dims_; }
  int64_t arena_bytes() const { return arena_floats_ * static_cast<int64_t>(sizeof(float)); }
  // Bytes of every op's packed weights (8-bit ones stay 8-bit where a Linear keeps them so).
  int64_t weight_bytes() const { return weight_bytes_; }
  // Bytes of packed weights used in place from the mapped .tmn file (not in weight_bytes).
  int64_t mapped_weight_bytes() const { return weights_.mapped_bytes(); }
  int threads() const { return pool_.size(); }
  size_t steps() const { return steps_.size(); }
  // The node name of every step, in run order (a fused chain is named by its first node).
  std::vector<std::string> step_names() const;
  // How many of the last steps a batch runs on all its images at once (see find_batch_tail).
  size_t batched_steps() const { return steps_.size() - tail_begin_; }

  // x: batch NHWC images (contiguous); y: batch outputs (contiguous). Calls are serialised.
  // A batch of at least threads() images runs whole images in parallel, each thread on an
  // arena of its own (allocated on the first such call); otherwise each step's output rows
  // are split over the threads. The batched steps (batched_steps()) then run on up to 64
  // images at once. An image holding any NaN or Inf gets all-NaN outputs without being run
  // (the kernels' max/min based clamps would turn it into finite garbage that differs
  // between ISAs).
  void run(const float* x, int64_t batch, float* y);
  // run() one image `repeats` times; returns each step's total seconds (for profiling: run()
  // itself takes no timings).
  std::vector<double> profile(const float* x, int repeats);

 private:
  struct Tensor {
    int32_t h = 1, w = 1, c = 1;
    int64_t floats() const { return static_cast<int64_t>(h) * w * c; }
    // Arena floats of a tensor with its own buffer (pixels ld apart; see pad_pixel_strides).
    int64_t stored_floats() const { return static_cast<int64_t>(h) * w * (ld ? ld : c); }
    int alias_of = -1;        // flatten/reshape/dropout share their input's buffer; a concat
                              // input is a channel range of the concat's buffer:
    int32_t channel_offset = 0;  // ... starting at this channel of alias_of
    int64_t ld = 0;              // ... with this pixel stride in floats (0: c); a tensor
                                 // with its own buffer may be padded too (pad_pixel_strides)
    int first = 0, last = 0;  // steps that write it first / read it last
    int64_t offset = -1;      // in floats, within the arena
  };
  struct Step;
  // A conv output written into a concat's buffer: channels [offset, offset + keep) of the
  // concat `group` (keep < the conv's channels when a slice after the concat drops the rest).
  struct ConcatPart {
    std::string group;
    int32_t offset, keep;
  };
  // Where one image's steps run: the arena holding its tensors and its input image.
  struct Frame {
    const Plan* plan;
    float* arena;
    const float* input;
    float* at(int t) const;
    int64_t ld(int t) const { return plan->ld(t); }
  };

  int tensor_id(const std::string& name, const std::string& node) const;
  int root(int t) const;
  void add_node(const json::Value& node, const ParamMap& params);
  // Nodes as one fused step, `tile` final rows at a time, bands with `slack` (chain_layout).
  void add_chain(const std::vector<const json::Value*>& nodes, const ParamMap& params,
                 int32_t tile, int32_t slack);
  void pad_pixel_strides();
  void plan_memory();
  void plan_concats(const std::vector<json::Value>& nodes, const std::string& output,
                    const ParamMap& params);
  int add_output(const std::string& name, Tensor y);
  int64_t ld(int t) const { return tensors_[t].ld ? tensors_[t].ld : tensors_[t].c; }
  // Runs steps [0, end) on one image (split = spread each step's rows over the pool); false,
  // without running any, if its input holds a NaN or Inf.
  bool run_steps(const Frame& f, bool split, size_t end);
  // run_steps on `batch` images (whole images per thread when there are enough), then
  // done(image, its frame, whether it ran) on the thread that ran it.
  void run_images(const float* x, int64_t batch, size_t end,
                  const std::function<void(int64_t, const Frame&, bool)>& done);
  void find_batch_tail();
  // n <= kTailBatch images: steps before tail_begin_ per image, the tail on all n at once.
  void run_batch_tail(const float* x, int64_t n, float* y);
  void run_step(const Frame& f, Step& step, bool split);
  // With two threads: the step in two parts split at caller_share_ (see plan.cc), and the
  // share updated from the parts' times once an image's steps have run.
  void run_in_two(const Frame& f, Step& step);
  void update_caller_share();
  void split_pointwise(Step& step, const std::shared_ptr<Conv2d>& conv, int xi, int ri, int yi,
                       const Tensor& y);

  WeightPool weights_;  // packed weights and the arena (declared first: freed last)
  std::vector<Tensor> tensors_;
  std::map<std::string, int> names_;
  std::map<std::string, ConcatPart> concat_parts_;   // conv output name -> where it goes
  std::map<std::string, int32_t> concat_channels_;   // concat group -> its buffer's channels
  std::map<std::string, std::string> concat_alias_;  // folded concat/slice output -> group
  std::vector<std::unique_ptr<Step>> steps_;
  int input_ = -1, output_ = -1;
  std::vector<int64_t> input_dims_, output_dims_;
  Isa isa_;
  int64_t arena_floats_ = 0;
  int64_t weight_bytes_ = 0;
  std::vector<AlignedFloats> arenas_;  // [0] always; one per thread once a batch needs them
  ThreadPool pool_;
  std::mutex run_mutex_;
  double caller_share_ = 0.5;              // of each split step, with two threads
  double part_seconds_[2] = {0, 0}, part_work_[2] = {0, 0};  // this image's, per thread
  AlignedFloats dequantized_[4];  // 8-bit params of the node being packed (construction only)
  // Batched tail (find_batch_tail): steps [tail_begin_, end) run on up to kTailBatch images at
  // once, from tensor tail_input_; tensor t's rows start at tail_rows_[t] * n in tail_batch_.
  static constexpr int64_t kTailBatch = 64;
  size_t tail_begin_ = 0;
  int tail_input_ = -1;
  std::vector<int64_t> tail_rows_;
  int64_t tail_row_floats_ = 0;
  AlignedFloats tail_batch_;
};

}  // namespace tmn
