#include "runtime/plan.h"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

namespace tmn {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

Activation activation_attr(const json::Value& attrs) {
  Activation a;
  const json::Value* name = attrs.find("activation");
  if (const json::Value* v = attrs.find("alpha"); v && v->is_number()) a.alpha = v->as_number();
  if (const json::Value* v = attrs.find("beta"); v && v->is_number()) a.beta = v->as_number();
  if (!name || name->is_null()) return a;
  const std::string& s = name->as_string("activation");
  if (s == "none") a.kind = ActKind::none;
  else if (s == "relu") a.kind = ActKind::relu;
  else if (s == "relu6") a.kind = ActKind::relu6;
  else if (s == "hardswish") a.kind = ActKind::hardswish;
  else if (s == "hardsigmoid") a.kind = ActKind::hardsigmoid;
  else throw std::invalid_argument("unknown activation '" + s + "'");
  return a;
}

// The SE's two activations are named by `inner` / `gate`; alpha and beta are shared.
Activation named_activation(const json::Value& attrs, const char* key) {
  Activation a = activation_attr(attrs);
  const std::string& s = attrs.at(key).as_string(key);
  a.kind = s == "relu" ? ActKind::relu
           : s == "relu6" ? ActKind::relu6
           : s == "hardswish" ? ActKind::hardswish
           : s == "hardsigmoid" ? ActKind::hardsigmoid
           : s == "none" ? ActKind::none
           : throw std::invalid_argument(std::string("unknown ") + key + " '" + s + "'");
  return a;
}

// A size-like int attribute: in [0, 2^16], so products and casts to int32 cannot wrap.
int32_t small_int(const json::Value& v, const char* what) {
  const int64_t x = v.as_int(what);
  require(0 <= x && x <= (1 << 16), std::string(what) + " out of range: " + std::to_string(x));
  return static_cast<int32_t>(x);
}

std::pair<int32_t, int32_t> int_pair(const json::Value& v, const char* what) {
  if (v.is_number()) return {small_int(v, what), small_int(v, what)};
  const auto& a = v.as_array(what);
  require(a.size() == 2, std::string(what) + " must have 2 values");
  return {small_int(a[0], what), small_int(a[1], what)};
}

Padding padding_attr(const json::Value& v) {
  Padding p;
  if (v.is_string()) {
    require(v.as_string() == "same", "padding must be 4 ints or \"same\"");
    p.same = true;
    return p;
  }
  const auto& a = v.as_array("padding");
  require(a.size() == 4, "padding must have 4 values (top, bottom, left, right)");
  p.top = small_int(a[0], "padding"), p.bottom = small_int(a[1], "padding");
  p.left = small_int(a[2], "padding"), p.right = small_int(a[3], "padding");
  return p;
}

const ParamView& param(const ParamMap& params, const json::Value& node, const char* role,
                       bool optional = false) {
  static const ParamView kNone;
  const json::Value* key = node.at("params").find(role);
  if (!key) {
    require(optional, std::string("missing param '") + role + "'");
    return kNone;
  }
  auto it = params.find(key->as_string(role));
  require(it != params.end(), "param '" + key->as_string() + "' was not given");
  return it->second;
}

// The Conv2d op of a conv2d node whose input has `cin` channels (8-bit weights are
// dequantized as they are packed, an 8-bit bias into scratch[1]); keep >= 0: only its first `keep` output
// channels (see Plan::plan_concats).
std::shared_ptr<Conv2d> make_conv(const json::Value& node, const ParamMap& params, int32_t cin_in,
                                  Isa isa, AlignedFloats* scratch, int32_t keep = -1) {
  const json::Value& attrs = node.at("attrs");
  const ParamView& w = param(params, node, "weight");
  const ParamView& b = param(params, node, "bias", true);
  require(w.shape.size() == 4, "conv weight must be 4-D");
  const auto stride = int_pair(attrs.at("stride"), "stride");
  int32_t groups = small_int(attrs.at("groups"), "groups");
  int32_t cout = w.shape[0], cin = w.shape[1] * groups;
  require(cin == cin_in, "input has " + std::to_string(cin_in) + " channels, weight expects " +
                             std::to_string(cin));
  require(!b.present() || b.size() == cout, "bias size does not match the weight");
  if (0 <= keep && keep < cout) {
    // The first output channels' weights and biases are the leading rows of the arrays; a
    // depthwise conv computes them from its input's first `keep` channels only.
    if (groups == cout && groups == cin) cin = groups = keep;
    cout = keep;
  }
  return std::make_shared<Conv2d>(w.source(), b.floats(scratch[1]), cout, cin, w.shape[2], w.shape[3], stride.first,
                                  stride.second, padding_attr(attrs.at("padding")), groups,
                                  activation_attr(attrs), isa);
}

// The 8-bit weight (out, in, ...) of a layer that sees one pixel (a classifier, V3's last 1x1
// conv, a squeeze-excite FC) as a Linear that keeps it 8-bit: null unless the file stores it
// so, quantized per output channel or per tensor.
std::shared_ptr<Linear> make_linear_q8(const ParamView& w, const ParamView& b, int32_t out,
                                       int32_t in, Activation act, Isa isa,
                                       AlignedFloats* scratch) {
  if (!w.q || w.size() != static_cast<int64_t>(out) * in) return nullptr;
  QuantizedWeights q;
  q.per_feature = w.q_channels == out && w.q_inner == in;
  if (w.q_channels != 1 && !q.per_feature) return nullptr;
  q.q = w.q, q.is_signed = w.q_signed, q.scale = w.scale, q.zero = w.zero_point, q.owner = w.owner;
  return std::make_shared<Linear>(q, b.floats(scratch[1]), out, in, act, isa);
}

// A fully connected layer (weight (out, in, ...)): on its 8-bit weights as stored when
// make_linear_q8 takes them, else on float32 panels.
std::shared_ptr<Linear> make_linear(const ParamView& w, const ParamView& b, int32_t out,
                                    int32_t in, Activation act, Isa isa, AlignedFloats* scratch) {
  if (auto q = make_linear_q8(w, b, out, in, act, isa, scratch)) return q;
  return std::make_shared<Linear>(w.source(), b.floats(scratch[1]), out, in, act, isa);
}

// make_linear for a conv2d node if it is a 1x1 conv (no groups) of a 1x1 image whose output is
// 1x1 too: its weights (out, in, 1, 1) are a linear layer's, and as one a batch of images can
// run it at once (Plan::find_batch_tail).
std::shared_ptr<Linear> conv_as_linear(const json::Value& node, const ParamMap& params,
                                       int32_t cin, Isa isa, AlignedFloats* scratch) {
  const json::Value& attrs = node.at("attrs");
  const ParamView& w = param(params, node, "weight");
  if (w.shape.size() != 4 || w.shape[1] != cin || w.shape[2] != 1 || w.shape[3] != 1 ||
      small_int(attrs.at("groups"), "groups") != 1)
    return nullptr;
  const Padding pad = padding_attr(attrs.at("padding"));
  if (!pad.same && (pad.top || pad.bottom || pad.left || pad.right)) return nullptr;
  const ParamView& b = param(params, node, "bias", true);
  require(!b.present() || b.size() == w.shape[0], "bias size does not match the weight");
  return make_linear(w, b, static_cast<int32_t>(w.shape[0]), cin, activation_attr(attrs), isa,
                     scratch);
}

// One level of a fused chain as the band planner sees it.
struct ChainDims {
  int32_t out_h;       // rows of the level's output
  int64_t row_floats;  // floats of one output row
  int32_t k, s;        // kernel height and stride of the level
};

// Rows of every intermediate level that one tile of `tile` final rows reads, walking back:
// T' = (T - 1) * s + k (clipped to the level's height).
std::vector<int32_t> chain_windows(const std::vector<ChainDims>& levels, int32_t tile) {
  std::vector<int32_t> rows(levels.size(), tile);
  for (size_t j = levels.size() - 1; j-- > 0;)
    rows[j] = std::min(levels[j].out_h, (rows[j + 1] - 1) * levels[j + 1].s + levels[j + 1].k);
  return rows;
}

// Band capacity (rows) of every intermediate level: its window plus `slack` windows more, so
// the band slides down its buffer and the rows the next tile still reads are moved back to
// the front only when the buffer runs out (about once per `slack` windows of new rows rather
// than once per tile: with short tiles those moves cost as much as the convs). Returns the
// floats of one thread's bands (each 64-byte aligned) and fills each band's offset and
// capacity when asked.
int64_t chain_bands(const std::vector<ChainDims>& levels, int32_t tile, int32_t slack,
                    std::vector<int64_t>* offsets_out = nullptr,
                    std::vector<int32_t>* capacity_out = nullptr) {
  const std::vector<int32_t> window = chain_windows(levels, tile);
  int64_t floats = 0;
  if (offsets_out) offsets_out->assign(levels.size(), 0);
  if (capacity_out) capacity_out->assign(levels.size(), 0);
  for (size_t j = 0; j + 1 < levels.size(); ++j) {
    const int32_t rows = std::min(levels[j].out_h, window[j] * (1 + slack));
    if (offsets_out) (*offsets_out)[j] = floats;
    if (capacity_out) (*capacity_out)[j] = rows;
    floats += (static_cast<int64_t>(rows) * levels[j].row_floats + 15) / 16 * 16;
  }
  return floats;
}

// Tile height (final output rows per tile) and band slack of a fused chain; tile 0: none fits.
struct ChainLayout {
  int32_t tile = 0, slack = 0;
};

// The tallest tile (halving from the whole output) whose windows fit in `bytes`.
int32_t chain_tile(const std::vector<ChainDims>& levels, int64_t bytes) {
  int32_t tile = levels.back().out_h;
  while (tile > 1 && chain_bands(levels, tile, 0) * 4 > bytes) tile = (tile + 1) / 2;
  return tile;
}

// Whether to fuse: only if the bands of the tallest tile whose windows fit in 384 KiB (so
// they stay in L2 from one level to the next), one set per thread, take less memory than
// `widest` (the intermediate fusing removes); tile 0 if not. Then, as long as all threads'
// bands stay within half of `widest` and within 1.5 MiB (fusing must still save memory:
// MobileNetV2's arena stays <= 2 MiB): taller tiles, up to windows of 768 KiB (tiles of a row
// or two make many small GEMM calls and move the overlapping rows every tile), and one window
// of slack (saves most of the moves).
ChainLayout chain_layout(const std::vector<ChainDims>& levels, int threads, int64_t widest) {
  ChainLayout l{chain_tile(levels, 384 << 10), 0};
  if (chain_bands(levels, l.tile, 0) * threads >= widest) return {};
  const auto fits = [&](int32_t tile, int32_t slack) {
    const int64_t floats = chain_bands(levels, tile, slack) * threads;
    return 2 * floats <= widest && floats * 4 <= (1536 << 10);
  };
  const int32_t taller = chain_tile(levels, 768 << 10);
  if (taller > l.tile && fits(taller, 0)) l.tile = taller;
  if (fits(l.tile, 1)) l.slack = 1;
  return l;
}

// Parts [0, rows) split into about 4 tasks per thread (fewer for small images), claimed
// dynamically: a thread the OS deschedules does not hold up the others. (Two threads split
// each step in two instead: Plan::run_in_two.)
int64_t row_tasks(int64_t rows, int threads) { return std::min<int64_t>(rows, 4 * threads); }

// Pixels of a GEMM's row tile (AVX-512 takes 12 at once): a pointwise task gets at least this.
constexpr int32_t kGemmTileRows = 12;
std::pair<int32_t, int32_t> task_rows(int64_t task, int64_t tasks, int64_t rows) {
  return {static_cast<int32_t>(rows * task / tasks), static_cast<int32_t>(rows * (task + 1) / tasks)};
}

}  // namespace

int64_t ParamView::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void ParamView::dequantize(int64_t first, int64_t count, float* out) const {
  require(first >= 0 && count >= 0 && first + count <= size(), "weight values out of range");
  if (packed.panels) {
    unpack_gemm_weights(packed.panels, packed.k, packed.n, packed.nr, first, count, out);
    return;
  }
  if (!q) {
    std::memcpy(out, data + first, sizeof(float) * count);
    return;
  }
  // Runs of elements sharing one scale: the whole tensor, or q_inner elements per channel.
  const int64_t run = q_channels == 1 ? size() : q_inner, end = first + count;
  for (int64_t i0 = first; i0 < end;) {
    const int64_t ch = i0 / run % q_channels, i1 = std::min(end, (i0 / run + 1) * run);
    const float s = scale[ch], z = static_cast<float>(zero_point[ch]);
    float* o = out + (i0 - first);
    const int64_t n = i1 - i0;
    if (q_signed) {
      const int8_t* v = reinterpret_cast<const int8_t*>(q) + i0;
      for (int64_t i = 0; i < n; ++i) o[i] = (static_cast<float>(v[i]) - z) * s;
    } else {
      const uint8_t* v = q + i0;
      for (int64_t i = 0; i < n; ++i) o[i] = (static_cast<float>(v[i]) - z) * s;
    }
    i0 = i1;
  }
}

const float* ParamView::floats(AlignedFloats& scratch) const {
  if (data || !present()) return data;
  if (scratch.size() < size()) scratch = AlignedFloats(size(), /*heap=*/true);
  dequantize(0, size(), scratch.data());
  return scratch.data();
}

WeightSource ParamView::source() const {
  if (data || !present()) return WeightSource(data);
  WeightSource s([this](int64_t first, int64_t count, float* out) { dequantize(first, count, out); });
  s.packed = packed;
  return s;
}

// One executable step: reads tensors `in`, writes tensor `out`, may be split over rows.
struct Plan::Step {
  std::string name;
  std::vector<int> in;
  int out = -1;
  // Runs parts [r0, r1) of one image (for parallel steps; see rows) or the whole image, on
  // pool thread `thread`.
  std::function<void(const Frame&, int32_t r0, int32_t r1, int thread)> run;
  std::function<void(const Frame&)> prepare;  // if set, runs whole on the caller before `run`
  int32_t rows = 1;       // how many parts the step can be split into: output rows, or
                          // pixels / weight panels (split_pointwise, linear)
  int32_t grain = 1;      // fewest parts worth a task of their own
  bool parallel = false;  // split over the pool
  bool chunked = false;   // one contiguous chunk of rows per thread (fused chains)
  bool any_ld = false;    // reads and writes its tensors at any pixel stride (Frame::ld)
  int scratch = -1;       // a tensor alive only during this step (fused chains' row bands,
                          // a squeeze-excite's pooled input)
  std::shared_ptr<Linear> fc;  // a linear step's layer (it can run a batch: find_batch_tail)
};

// Longest fused conv chain: one inverted-residual block (expand, depthwise, project) or the
// stem with the first block. Longer chains make the early bands nearly whole tensors again
// (each stride-2 level doubles the rows the next one needs).
constexpr size_t kMaxChain = 3;

Plan::Plan(const json::Value& graph, const ParamMap& params, int threads, Isa isa,
           bool fuse_chains)
    : isa_(isa), pool_(std::max(1, threads)) {
  WeightPoolScope scope(&weights_);  // every op's packed weights, then the arena
  const auto& inputs = graph.at("inputs").as_array("inputs");
  require(inputs.size() == 1, "the plan runs graphs with exactly one input");
  const auto& shape = inputs[0].at("shape").as_array("input shape");
  require(shape.size() == 4, "the graph input must be NHWC");
  Tensor in;
  in.h = small_int(shape[1], "input H"), in.w = small_int(shape[2], "input W");
  in.c = small_int(shape[3], "input C");
  require(in.h > 0 && in.w > 0 && in.c > 0, "input dims must be positive");
  input_ = 0;
  tensors_.push_back(in);
  names_[inputs[0].at("name").as_string("input name")] = 0;
  input_dims_ = {in.h, in.w, in.c};

  const auto& nodes = graph.at("nodes").as_array("nodes");
  const auto& outputs = graph.at("outputs").as_array("outputs");
  require(outputs.size() == 1, "the plan runs graphs with exactly one output");
  // Readers of every tensor (graph outputs count as one), to find fusable conv chains.
  std::map<std::string, int> readers;
  for (const json::Value& node : nodes)
    for (const json::Value& t : node.at("inputs").as_array("inputs")) ++readers[t.as_string()];
  ++readers[outputs[0].as_string("output")];
  auto conv_feeds_next = [&](size_t i) {  // node i is a conv whose only reader is conv i + 1
    if (i + 1 >= nodes.size() || nodes[i].at("op").as_string() != "conv2d" ||
        nodes[i + 1].at("op").as_string() != "conv2d")
      return false;
    const std::string& out = nodes[i].at("output").as_string();
    const auto& next_in = nodes[i + 1].at("inputs").as_array();
    return readers[out] == 1 && next_in[0].as_string() == out;
  };

  // Output dims of conv node j reading `in` (from the weight shape and attrs; nothing packed).
  auto conv_out = [&](size_t j, Tensor in) {
    const json::Value& attrs = nodes[j].at("attrs");
    const ParamView& w = param(params, nodes[j], "weight");
    require(w.shape.size() == 4, "conv weight must be 4-D");
    const auto st = int_pair(attrs.at("stride"), "stride");
    const WindowGeometry g = window_geometry(in.h, in.w, w.shape[2], w.shape[3], st.first,
                                             st.second, padding_attr(attrs.at("padding")));
    Tensor out;
    out.h = g.out_h, out.w = g.out_w, out.c = w.shape[0];
    return out;
  };
  // Fusing nodes [i, end) pays off when it removes an intermediate tensor larger than the
  // chain's input and output (which stay materialised): the expanded tensor of an
  // inverted-residual block, the stem output before a stride-2 block. The bands (one set per
  // thread) must also take less memory than that intermediate (see chain_layout). Returns
  // the chain's layout, tile 0 if fusing does not pay.
  auto fusion_layout = [&](size_t i, size_t end) {
    Tensor t = tensors_[tensor_id(nodes[i].at("inputs").as_array()[0].as_string(), "chain")];
    const int64_t in_floats = t.floats();
    int64_t widest = 0;
    std::vector<ChainDims> dims;
    for (size_t j = i; j < end; ++j) {
      t = conv_out(j, t);
      const auto& w = param(params, nodes[j], "weight").shape;
      dims.push_back({t.h, static_cast<int64_t>(t.w) * t.c, static_cast<int32_t>(w[2]),
                      int_pair(nodes[j].at("attrs").at("stride"), "stride").first});
      if (j + 1 < end) widest = std::max(widest, t.floats());
    }
    if (widest <= std::max(in_floats, t.floats())) return ChainLayout{};
    return chain_layout(dims, pool_.size(), widest);
  };

  if (fuse_chains) plan_concats(nodes, outputs[0].as_string("output"), params);

  for (size_t i = 0; i < nodes.size();) {
    size_t end = i + 1;
    ChainLayout layout;
    if (fuse_chains) {
      size_t longest = i + 1;
      while (longest - i < kMaxChain && conv_feeds_next(longest - 1)) ++longest;
      for (end = longest; end - i >= 2; --end)
        if ((layout = fusion_layout(i, end)).tile > 0) break;
      end = std::max(end, i + 1);
    }
    const std::string name = nodes[i].at("name").as_string("node name");
    try {
      if (end - i >= 2) {
        std::vector<const json::Value*> chain;
        for (size_t j = i; j < end; ++j) chain.push_back(&nodes[j]);
        add_chain(chain, params, layout.tile, layout.slack);
      } else {
        add_node(nodes[i], params);
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("node '" + name + "': " + e.what());
    }
    i = end;
  }
  output_ = tensor_id(outputs[0].as_string("output"), "outputs");
  const Tensor& o = tensors_[output_];
  output_dims_ = {o.h, o.w, o.c};
  for (AlignedFloats& v : dequantized_) v = AlignedFloats();
  weight_bytes_ = weights_.allocated_bytes();  // before the arena comes from the same pool
  pad_pixel_strides();
  plan_memory();
  find_batch_tail();
}

Plan::~Plan() = default;

int Plan::tensor_id(const std::string& name, const std::string& node) const {
  auto it = names_.find(name);
  require(it != names_.end(), "reads unknown tensor '" + name + "' (in " + node + ")");
  return it->second;
}

int Plan::root(int t) const {
  while (tensors_[t].alias_of >= 0) t = tensors_[t].alias_of;
  return t;
}

float* Plan::Frame::at(int t) const {
  int64_t channel = 0;  // a concat input's channel range of the concat's buffer
  for (; plan->tensors_[t].alias_of >= 0; t = plan->tensors_[t].alias_of)
    channel += plan->tensors_[t].channel_offset;
  if (t == plan->input_) return const_cast<float*>(input) + channel;
  return arena + plan->tensors_[t].offset + channel;
}

std::vector<std::string> Plan::step_names() const {
  std::vector<std::string> names;
  for (const auto& step : steps_) names.push_back(step->name);
  return names;
}

// No-copy concat. A concat whose inputs are each the output of a conv2d node that only conv2d
// nodes read otherwise (convs take any pixel stride for their input, output and residual)
// gets one buffer, named by the concat's output (the "group"). Each producing conv writes its
// channel range of that buffer with the buffer's pixel stride, the cheap depthwise of a ghost
// module reads the primary conv's range in place, and the concat runs no step. The inputs are
// views (alias_of + channel_offset + ld) of the buffer, so the memory planner gives it the
// union of their lifetimes.
// A slice_channels from channel 0 that is the concat's only reader (a ghost module of odd
// width) folds in too: the buffer holds only the kept channels, and the conv whose range
// crosses the end computes only its first `keep` channels (weights sliced when packed; a
// depthwise conv then reads only its input's first `keep` channels). That conv must have no
// other reader and no residual, and no conv may fall wholly past the end; otherwise the slice
// stays a copy.
void Plan::plan_concats(const std::vector<json::Value>& nodes, const std::string& output,
                        const ParamMap& params) {
  std::map<std::string, const json::Value*> producer;
  std::map<std::string, std::vector<const json::Value*>> readers;
  for (const json::Value& n : nodes) {
    producer[n.at("output").as_string()] = &n;
    for (const json::Value& t : n.at("inputs").as_array()) readers[t.as_string()].push_back(&n);
  }
  auto op = [](const json::Value* n) { return n->at("op").as_string(); };
  auto conv_channels = [&](const json::Value* n) -> int32_t {  // -1: not a well-formed conv
    const json::Value* key = n->at("params").find("weight");
    auto w = key && key->is_string() ? params.find(key->as_string()) : params.end();
    return w == params.end() || w->second.shape.size() != 4 ? -1 : w->second.shape[0];
  };
  for (const json::Value& n : nodes) {
    if (op(&n) != "concat") continue;
    const std::string group = n.at("output").as_string();
    std::vector<std::string> ins;
    for (const json::Value& t : n.at("inputs").as_array()) ins.push_back(t.as_string());
    bool ok = std::set<std::string>(ins.begin(), ins.end()).size() == ins.size();
    std::vector<int32_t> widths;
    int32_t total = 0;
    for (const std::string& t : ins) {
      auto p = producer.find(t);
      ok = ok && t != output && p != producer.end() && op(p->second) == "conv2d";
      for (const json::Value* r : readers[t]) ok = ok && (r == &n || op(r) == "conv2d");
      if (!ok || conv_channels(p->second) <= 0) {
        ok = false;
        break;
      }
      widths.push_back(conv_channels(p->second));
      total += widths.back();
    }
    if (!ok) continue;
    int32_t channels = total;
    const json::Value* slice = nullptr;
    const auto& after = readers[group];
    if (group != output && after.size() == 1 && op(after[0]) == "slice_channels") {
      const json::Value& a = after[0]->at("attrs");
      const json::Value *start = a.find("start"), *stop = a.find("stop");
      if (start && stop && start->is_number() && stop->is_number() && start->as_int() == 0) {
        const int64_t end = stop->as_int();
        bool fold = 0 < end && end < total;
        int64_t offset = 0;
        for (size_t i = 0; fold && i < ins.size(); offset += widths[i++])
          fold = end > offset && (end >= offset + widths[i] ||
                                  (readers[ins[i]].size() == 1 &&
                                   producer[ins[i]]->at("inputs").as_array().size() == 1));
        if (fold) channels = static_cast<int32_t>(end), slice = after[0];
      }
    }
    int32_t offset = 0;
    for (size_t i = 0; i < ins.size(); offset += widths[i++])
      concat_parts_[ins[i]] = {group, offset, std::min(widths[i], channels - offset)};
    concat_channels_[group] = channels;
    concat_alias_[group] = group;
    if (slice) concat_alias_[slice->at("output").as_string()] = group;
  }
}

// Adds step output tensor `y` named `name` (its id is the tensors' count before the call); a
// concat part becomes a channel range of its group's buffer, which the first part creates.
int Plan::add_output(const std::string& name, Tensor y) {
  const int id = static_cast<int>(tensors_.size());
  tensors_.push_back(y);
  names_[name] = id;
  auto part = concat_parts_.find(name);
  if (part == concat_parts_.end()) return id;
  const ConcatPart& cp = part->second;
  auto group = names_.find(cp.group);
  if (group == names_.end()) {
    Tensor buffer;
    buffer.h = y.h, buffer.w = y.w, buffer.c = concat_channels_.at(cp.group);
    tensors_.push_back(buffer);
    group = names_.emplace(cp.group, static_cast<int>(tensors_.size()) - 1).first;
  }
  const Tensor& buffer = tensors_[group->second];
  require(buffer.h == y.h && buffer.w == y.w, "concat '" + cp.group + "': inputs differ in H or W");
  require(y.c == cp.keep, "concat '" + cp.group + "': input has the wrong channel count");
  Tensor& view = tensors_[id];
  view.alias_of = group->second, view.channel_offset = cp.offset, view.ld = buffer.c;
  return id;
}

void Plan::add_node(const json::Value& node, const ParamMap& params) {
  const std::string& op = node.at("op").as_string("op");
  const json::Value& attrs = node.at("attrs");
  const std::string& out_name = node.at("output").as_string("output");
  if (auto folded = concat_alias_.find(out_name); folded != concat_alias_.end()) {
    names_[out_name] = tensor_id(folded->second, out_name);  // written in place by the convs
    return;
  }
  auto step = std::make_unique<Step>();
  step->name = node.at("name").as_string();
  for (const json::Value& t : node.at("inputs").as_array("inputs"))
    step->in.push_back(tensor_id(t.as_string("input"), step->name));
  require(!step->in.empty(), "has no inputs");
  const Tensor x = tensors_[step->in[0]];
  Tensor y;
  y.h = x.h, y.w = x.w, y.c = x.c;

  std::shared_ptr<Linear> fc;  // a linear node, or a 1x1 conv of one pixel
  if (op == "conv2d" && x.h == 1 && x.w == 1 && step->in.size() == 1 &&
      concat_parts_.find(out_name) == concat_parts_.end())
    fc = conv_as_linear(node, params, x.c, isa_, dequantized_);
  if (op == "linear") {
    const ParamView& w = param(params, node, "weight");
    const ParamView& b = param(params, node, "bias", true);
    require(w.shape.size() == 2, "linear weight must be 2-D");
    require(x.floats() == w.shape[1], "input has " + std::to_string(x.floats()) +
                                          " features, weight expects " + std::to_string(w.shape[1]));
    require(!b.present() || b.size() == w.shape[0], "bias size does not match the weight");
    const int32_t out = static_cast<int32_t>(w.shape[0]), in = static_cast<int32_t>(w.shape[1]);
    fc = make_linear(w, b, out, in, activation_attr(attrs), isa_, dequantized_);
  }
  if (fc) {
    y.h = 1, y.w = 1, y.c = fc->out_features();
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    // One row: split over the threads by output features (whole weight panels).
    const int32_t block = fc->column_block();
    step->rows = (fc->out_features() + block - 1) / block;
    step->parallel = true;
    step->fc = fc;
    step->run = [fc, xi, yi, block](const Frame& p, int32_t p0, int32_t p1, int) {
      fc->run(p.at(xi), fc->in_features(), p.at(yi), fc->out_features(), 1, p0 * block,
              std::min(fc->out_features(), p1 * block));
    };
  } else if (op == "conv2d") {
    auto part = concat_parts_.find(out_name);
    auto conv = make_conv(node, params, x.c, isa_, dequantized_,
                          part == concat_parts_.end() ? -1 : part->second.keep);
    const int32_t cout = conv->cout();
    const WindowGeometry g = conv->geometry(x.h, x.w);
    y.h = g.out_h, y.w = g.out_w, y.c = cout;
    const bool residual = step->in.size() > 1;
    if (residual) {
      const Tensor& r = tensors_[step->in[1]];
      require(r.h == y.h && r.w == y.w && r.c == y.c, "residual shape differs from the output");
    }
    const int xi = step->in[0], ri = residual ? step->in[1] : -1, yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    step->rows = y.h;
    step->parallel = true;
    step->any_ld = true;
    step->run = [conv, xi, ri, yi, xs](const Frame& p, int32_t r0, int32_t r1, int) {
      conv->run({p.at(xi), xs.h, xs.w, p.ld(xi)}, p.at(yi), p.ld(yi),
                ri >= 0 ? p.at(ri) : nullptr, ri >= 0 ? p.ld(ri) : 0, r0, r1);
    };
    if (conv->kind() == Conv2d::Kind::pointwise) split_pointwise(*step, conv, xi, ri, yi, y);
  } else if (op == "squeeze_excite") {
    const ParamView& w1 = param(params, node, "w1");
    const ParamView& w2 = param(params, node, "w2");
    const ParamView& b1 = param(params, node, "b1", true);
    const ParamView& b2 = param(params, node, "b2", true);
    const int64_t s = w1.shape.at(0);
    require(w1.size() == s * x.c && w2.size() == s * x.c, "SE weights do not match the input");
    require((!b1.present() || b1.size() == s) && (!b2.present() || b2.size() == x.c),
            "SE bias sizes");
    // Each FC sees one pixel: 8-bit weights in the file stay 8-bit, as for classifiers.
    const int32_t squeeze = static_cast<int32_t>(s);
    auto se = std::make_shared<SqueezeExcite>(
        std::move(*make_linear(w1, b1, squeeze, x.c, named_activation(attrs, "inner"), isa_,
                               dequantized_)),
        std::move(*make_linear(w2, b2, x.c, squeeze, named_activation(attrs, "gate"), isa_,
                               dequantized_ + 2)),
        isa_);
    // Three steps: the pool (on the caller) and the reduce FC split by output features, the
    // expand FC likewise (at 7x7 their weights, not the pixels, are most of the work), then
    // the scaling split by rows. The same kernels on the same data as SqueezeExcite::run.
    const KernelTable* table = &kernel_table(isa_);
    const int xi = step->in[0];
    const Tensor xs = x;
    const int64_t pixels = static_cast<int64_t>(x.h) * x.w;
    Tensor pooled;
    pooled.c = x.c;
    const int pi = static_cast<int>(tensors_.size());
    tensors_.push_back(pooled);
    auto fc_step = [&](const std::string& suffix, const Linear* fc, int in, int in_floats) {
      auto fc_part = std::make_unique<Step>();
      fc_part->name = step->name + suffix;
      fc_part->in = {in};
      Tensor out;
      out.c = fc->out_features();
      const int oi = add_output(out_name + suffix, out);
      const int32_t block = fc->column_block();
      fc_part->out = oi;
      fc_part->rows = (fc->out_features() + block - 1) / block;
      fc_part->parallel = true;
      fc_part->run = [se, fc, in, oi, in_floats, block](const Frame& p, int32_t p0, int32_t p1, int) {
        fc->run(p.at(in), in_floats, p.at(oi), fc->out_features(), 1, p0 * block,
                std::min(fc->out_features(), p1 * block));
      };
      return fc_part;
    };
    auto reduce = fc_step("/reduce", &se->reduce(), pi, x.c);
    reduce->in = {xi};
    reduce->scratch = pi;
    reduce->prepare = [table, xi, pi, xs, pixels](const Frame& p) {
      table->global_avg_pool(p.at(xi), pixels, xs.c, xs.c, p.at(pi));
    };
    const int hi = reduce->out;
    steps_.push_back(std::move(reduce));
    auto expand = fc_step("/expand", &se->expand(), hi, static_cast<int>(s));
    const int gi = expand->out;
    steps_.push_back(std::move(expand));
    step->in.push_back(gi);
    const int yi = static_cast<int>(tensors_.size());
    step->rows = x.h;
    step->parallel = true;
    step->run = [table, xi, gi, yi, xs](const Frame& p, int32_t r0, int32_t r1, int) {
      const int64_t begin = static_cast<int64_t>(r0) * xs.w * xs.c;
      table->mul_channels(p.at(xi) + begin, p.at(gi), p.at(yi) + begin,
                          static_cast<int64_t>(r1 - r0) * xs.w, xs.c, xs.c);
    };
  } else if (op == "activation" || op == "add" || op == "mul") {
    const Activation act = op == "mul" ? Activation{} : activation_attr(attrs);
    if (op != "activation") {
      require(step->in.size() == 2, op + " needs two inputs");
      const Tensor& b = tensors_[step->in[1]];
      if (op == "add")
        require(b.h == x.h && b.w == x.w && b.c == x.c, "add inputs differ in shape");
      else
        require(b.h == 1 && b.w == 1 && b.c == x.c, "mul scale must be (1, 1, C)");
    }
    const KernelTable* table = &kernel_table(isa_);
    const int ai = step->in[0], bi = step->in.size() > 1 ? step->in[1] : -1;
    const int yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    const std::string kind = op;
    step->rows = x.h;
    step->parallel = true;
    step->run = [table, act, ai, bi, yi, xs, kind](const Frame& p, int32_t r0, int32_t r1, int) {
      const int64_t row = static_cast<int64_t>(xs.w) * xs.c, begin = r0 * row, n = (r1 - r0) * row;
      if (kind == "activation") table->activation(p.at(ai) + begin, p.at(yi) + begin, n, act);
      else if (kind == "add") table->add(p.at(ai) + begin, p.at(bi) + begin, p.at(yi) + begin, n, act);
      else
        table->mul_channels(p.at(ai) + begin, p.at(bi), p.at(yi) + begin,
                            static_cast<int64_t>(r1 - r0) * xs.w, xs.c, xs.c);
    };
  } else if (op == "batchnorm") {
    // A BatchNorm no conv could absorb (or an importer's per-channel affine): y = x*scale + shift.
    const ParamView* p4[4] = {&param(params, node, "gamma"), &param(params, node, "beta"),
                              &param(params, node, "mean"), &param(params, node, "var")};
    const float* v4[4];
    for (int i = 0; i < 4; ++i) {
      require(p4[i]->size() == x.c, "batchnorm params must have C values");
      v4[i] = p4[i]->floats(dequantized_[i]);
    }
    const double eps = attrs.at("eps").as_number("eps");
    auto affine = std::make_shared<std::vector<float>>(2 * static_cast<size_t>(x.c));
    for (int32_t ch = 0; ch < x.c; ++ch) {
      const double inv = v4[0][ch] / std::sqrt(static_cast<double>(v4[3][ch]) + eps);
      (*affine)[ch] = static_cast<float>(inv);
      (*affine)[x.c + ch] = static_cast<float>(v4[1][ch] - v4[2][ch] * inv);
    }
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    step->rows = x.h;
    step->parallel = true;
    step->run = [affine, xi, yi, xs](const Frame& p, int32_t r0, int32_t r1, int) {
      const float* scale = affine->data();
      const float* shift = scale + xs.c;
      const float* src = p.at(xi);
      float* out = p.at(yi);
      for (int64_t px = static_cast<int64_t>(r0) * xs.w; px < static_cast<int64_t>(r1) * xs.w; ++px)
        for (int32_t ch = 0; ch < xs.c; ++ch)
          out[px * xs.c + ch] = src[px * xs.c + ch] * scale[ch] + shift[ch];
    };
  } else if (op == "global_avg_pool") {
    const KernelTable* table = &kernel_table(isa_);
    y.h = 1, y.w = 1;
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    step->run = [table, xi, yi, xs](const Frame& p, int32_t, int32_t, int) {
      table->global_avg_pool(p.at(xi), static_cast<int64_t>(xs.h) * xs.w, xs.c, xs.c, p.at(yi));
    };
  } else if (op == "avg_pool2d" || op == "max_pool2d") {
    const auto kernel = int_pair(attrs.at("kernel"), "kernel");
    const json::Value* st = attrs.find("stride");
    const auto stride = st && !st->is_null() ? int_pair(*st, "stride") : kernel;
    const json::Value* cip = attrs.find("count_include_pad");
    auto pool = std::make_shared<Pool2d>(op == "max_pool2d" ? PoolKind::max : PoolKind::average,
                                         kernel.first, kernel.second, stride.first, stride.second,
                                         padding_attr(attrs.at("padding")),
                                         cip && cip->type() == json::Value::Type::boolean && cip->as_bool(),
                                         isa_);
    const WindowGeometry g = pool->geometry(x.h, x.w);
    y.h = g.out_h, y.w = g.out_w;
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    step->rows = y.h;
    step->parallel = true;
    step->run = [pool, xi, yi, xs](const Frame& p, int32_t r0, int32_t r1, int) {
      pool->run({p.at(xi), xs.h, xs.w, xs.c}, xs.c, p.at(yi), xs.c, r0, r1);
    };
  } else if (op == "flatten" || op == "reshape" || op == "dropout") {
    // Same bytes in NHWC order: the output is a view of the input's buffer.
    if (op != "dropout") y.h = 1, y.w = 1, y.c = static_cast<int32_t>(x.floats());
    if (op == "reshape") {
      const auto& s = attrs.at("shape").as_array("shape");
      std::vector<int64_t> dims;
      int64_t known = 1, unknown = -1;
      for (size_t i = 0; i < s.size(); ++i) {
        dims.push_back(s[i].as_int("shape"));
        if (dims.back() == -1) unknown = i; else known *= dims.back();
      }
      if (unknown >= 0) dims[unknown] = known > 0 ? x.floats() / known : 0;
      int64_t total = 1;
      for (int64_t d : dims) total *= d;
      require(total == x.floats(), "reshape does not preserve the element count");
      require(dims.size() <= 3 && !dims.empty(), "reshape must give 1 to 3 dims per image");
      while (dims.size() < 3) dims.insert(dims.begin(), 1);
      y.h = dims[0], y.w = dims[1], y.c = dims[2];
    }
    y.alias_of = step->in[0];
    step->run = [](const Frame&, int32_t, int32_t, int) {};
  } else if (op == "concat") {
    int32_t c = 0;
    for (int t : step->in) {
      const Tensor& s = tensors_[t];
      require(s.h == x.h && s.w == x.w, "concat inputs differ in H or W");
      c += s.c;
    }
    y.c = c;
    const std::vector<int> ins = step->in;
    const int yi = static_cast<int>(tensors_.size());
    std::vector<int32_t> widths;
    for (int t : ins) widths.push_back(tensors_[t].c);
    const int64_t pixels = static_cast<int64_t>(x.h) * x.w;
    step->run = [ins, widths, yi, pixels, c](const Frame& p, int32_t, int32_t, int) {
      float* out = p.at(yi);
      int32_t offset = 0;
      for (size_t i = 0; i < ins.size(); ++i) {
        const float* src = p.at(ins[i]);
        for (int64_t px = 0; px < pixels; ++px)
          std::memcpy(out + px * c + offset, src + px * widths[i], sizeof(float) * widths[i]);
        offset += widths[i];
      }
    };
  } else if (op == "slice_channels") {
    const int32_t start = small_int(attrs.at("start"), "start"), stop = small_int(attrs.at("stop"), "stop");
    require(0 <= start && start < stop && stop <= x.c, "slice out of range");
    y.c = stop - start;
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    step->run = [xi, yi, xs, start, stop](const Frame& p, int32_t, int32_t, int) {
      const float* src = p.at(xi);
      float* out = p.at(yi);
      for (int64_t px = 0; px < static_cast<int64_t>(xs.h) * xs.w; ++px)
        std::memcpy(out + px * (stop - start), src + px * xs.c + start, sizeof(float) * (stop - start));
    };
  } else if (op == "pad") {
    const auto& pads = attrs.at("pads").as_array("pads");
    require(pads.size() == 4, "pads must have 4 values");
    const int32_t t = small_int(pads[0], "pads"), b = small_int(pads[1], "pads"), l = small_int(pads[2], "pads"), r = small_int(pads[3], "pads");
    require(t >= 0 && b >= 0 && l >= 0 && r >= 0, "pads must be >= 0");
    const json::Value* v = attrs.find("value");
    const float value = v && v->is_number() ? static_cast<float>(v->as_number()) : 0.0f;
    y.h = x.h + t + b, y.w = x.w + l + r;
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    const Tensor xs = x, ys = y;
    step->run = [xi, yi, xs, ys, t, l, value](const Frame& p, int32_t, int32_t, int) {
      float* out = p.at(yi);
      std::fill(out, out + ys.floats(), value);
      const float* src = p.at(xi);
      for (int32_t row = 0; row < xs.h; ++row)
        std::memcpy(out + ((static_cast<int64_t>(row) + t) * ys.w + l) * ys.c,
                    src + static_cast<int64_t>(row) * xs.w * xs.c, sizeof(float) * xs.w * xs.c);
    };
  } else if (op == "softmax") {
    const int xi = step->in[0], yi = static_cast<int>(tensors_.size());
    const Tensor xs = x;
    step->run = [xi, yi, xs](const Frame& p, int32_t, int32_t, int) {
      const float* src = p.at(xi);
      float* out = p.at(yi);
      for (int64_t px = 0; px < static_cast<int64_t>(xs.h) * xs.w; ++px) {
        const float* s = src + px * xs.c;
        float* o = out + px * xs.c;
        const float m = *std::max_element(s, s + xs.c);
        double sum = 0.0;
        for (int32_t i = 0; i < xs.c; ++i) sum += (o[i] = std::exp(s[i] - m));
        for (int32_t i = 0; i < xs.c; ++i) o[i] = static_cast<float>(o[i] / sum);
      }
    };
  } else {
    throw std::invalid_argument("op '" + op + "' is not supported by the compiled plan");
  }
  step->out = add_output(out_name, y);
  steps_.push_back(std::move(step));
}

// A 1x1 conv splits by pixels rather than rows, so a 7x7 layer shares out evenly over any
// thread count (rows: 4 + 3 over two threads); a 1x1 image (a classifier) splits by output
// channels, in whole weight panels. Either way each output gets the sums of one call: parts
// of >= 12 pixels have GEMM row tiles of >= 4 rows (see gemm_simd.h). Images of 2-23 pixels
// run whole (parts of a row or two would have shorter tiles).
void Plan::split_pointwise(Step& step, const std::shared_ptr<Conv2d>& conv, int xi, int ri,
                           int yi, const Tensor& y) {
  const int64_t pixels = static_cast<int64_t>(y.h) * y.w;
  if (pixels >= 2 * kGemmTileRows) {
    step.rows = static_cast<int32_t>(pixels);
    step.grain = kGemmTileRows;
    step.run = [conv, xi, ri, yi](const Frame& p, int32_t p0, int32_t p1, int) {
      conv->run_pointwise(p.at(xi), p.ld(xi), p.at(yi), p.ld(yi), ri >= 0 ? p.at(ri) : nullptr,
                          ri >= 0 ? p.ld(ri) : 0, p0, p1, 0, conv->cout());
    };
  } else if (pixels > 1) {
    step.parallel = false;
  } else {
    const int32_t block = conv->column_block();
    step.rows = (conv->cout() + block - 1) / block;
    step.run = [conv, xi, ri, yi, block](const Frame& p, int32_t c0, int32_t c1, int) {
      conv->run_pointwise(p.at(xi), p.ld(xi), p.at(yi), p.ld(yi), ri >= 0 ? p.at(ri) : nullptr,
                          ri >= 0 ? p.ld(ri) : 0, 0, 1, c0 * block,
                          std::min(conv->cout(), c1 * block));
    };
  }
}

// Rows of a conv's input that its output rows [a, b) read (clipped to the image).
static std::pair<int32_t, int32_t> input_rows(int32_t a, int32_t b, int32_t k, int32_t s,
                                              int32_t pad_top, int32_t in_h) {
  return {std::max(0, a * s - pad_top), std::min(in_h, (b - 1) * s - pad_top + k)};
}

void Plan::add_chain(const std::vector<const json::Value*>& nodes, const ParamMap& params,
                     int32_t tile, int32_t slack) {
  struct Level {
    std::shared_ptr<Conv2d> conv;
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, pad_top;
    int64_t row_floats;   // floats of one output row
    int64_t band_offset;  // of the output band (intermediate levels) in one thread's bands
    int32_t band_rows;    // ... and its capacity in rows
    int residual;         // tensor added to the output, or -1 (never a chain intermediate:
                          // those have a single reader, the next conv)
  };
  auto step = std::make_unique<Step>();
  step->name = nodes[0]->at("name").as_string();
  for (const json::Value& t : nodes[0]->at("inputs").as_array()) step->in.push_back(tensor_id(t.as_string(), step->name));
  step->in.resize(1);  // the chain's input; residual inputs are added below

  std::vector<Level> levels;
  Tensor cur = tensors_[step->in[0]];
  const std::string out_name = nodes.back()->at("output").as_string("output");
  const auto part = concat_parts_.find(out_name);
  for (const json::Value* node : nodes) {
    Level l{};
    l.conv = make_conv(*node, params, cur.c, isa_, dequantized_,
                       node == nodes.back() && part != concat_parts_.end() ? part->second.keep : -1);
    const WindowGeometry g = l.conv->geometry(cur.h, cur.w);
    l.in_h = cur.h, l.in_w = cur.w, l.in_c = cur.c;
    l.out_h = g.out_h, l.out_w = g.out_w, l.out_c = l.conv->cout(), l.pad_top = g.pad_top;
    l.row_floats = static_cast<int64_t>(l.out_w) * l.out_c;
    l.residual = -1;
    const auto& inputs = node->at("inputs").as_array();
    require(inputs.size() <= 2, "conv2d takes at most a residual");
    if (inputs.size() == 2) {
      l.residual = tensor_id(inputs[1].as_string(), step->name);
      const Tensor& r = tensors_[l.residual];
      require(r.h == l.out_h && r.w == l.out_w && r.c == l.out_c,
              "residual shape differs from the output");
      step->in.push_back(l.residual);
    }
    levels.push_back(l);
    cur.h = l.out_h, cur.w = l.out_w, cur.c = l.out_c;
  }
  Tensor y;
  y.h = cur.h, y.w = cur.w, y.c = cur.c;

  std::vector<ChainDims> dims;
  for (const Level& l : levels)
    dims.push_back({l.out_h, l.row_floats, l.conv->kernel_h(), l.conv->stride_h()});
  std::vector<int64_t> band_offsets;
  std::vector<int32_t> band_rows;
  const int64_t band_floats = chain_bands(dims, tile, slack, &band_offsets, &band_rows);
  for (size_t j = 0; j < levels.size(); ++j)
    levels[j].band_offset = band_offsets[j], levels[j].band_rows = band_rows[j];

  const int threads = pool_.size();
  Tensor scratch;
  scratch.h = 1, scratch.w = 1, scratch.c = static_cast<int32_t>(band_floats * threads);
  const int scratch_id = static_cast<int>(tensors_.size());
  tensors_.push_back(scratch);
  const int xi = step->in[0], yi = scratch_id + 1;
  step->scratch = scratch_id;
  step->rows = y.h;
  step->parallel = true;
  step->chunked = true;
  step->any_ld = true;
  step->run = [levels, xi, yi, scratch_id, band_floats, tile](
                  const Frame& p, int32_t r0, int32_t r1, int thread) {
    const size_t n = levels.size();
    float* bands = p.at(scratch_id) + band_floats * thread;
    std::vector<std::pair<int32_t, int32_t>> held(n, {0, 0}), need(n);
    std::vector<int32_t> slot(n, 0);  // band row holding held[j].first
    for (int32_t t0 = r0; t0 < r1; t0 += tile) {
      const int32_t t1 = std::min(t0 + tile, r1);
      need[n - 1] = {t0, t1};
      for (size_t j = n - 1; j-- > 0;) {
        const Level& next = levels[j + 1];
        need[j] = input_rows(need[j + 1].first, need[j + 1].second, next.conv->kernel_h(),
                             next.conv->stride_h(), next.pad_top, next.in_h);
      }
      // The input of level 0 is the chain's input tensor (whole); later levels read the
      // previous band through a virtual origin: row r of the band's tensor sits at
      // origin + r * row_floats, and only rows held in the band are ever touched.
      const float* in = p.at(xi);
      int64_t in_ld = p.ld(xi);
      for (size_t j = 0; j < n; ++j) {
        const Level& l = levels[j];
        const float* res = l.residual >= 0 ? p.at(l.residual) : nullptr;
        const int64_t res_ld = l.residual >= 0 ? p.ld(l.residual) : 0;
        if (j + 1 == n) {
          l.conv->run({in, l.in_h, l.in_w, in_ld}, p.at(yi), p.ld(yi), res, res_ld, t0, t1);
          break;
        }
        float* band = bands + l.band_offset;
        auto [n0, n1] = need[j];
        auto [b0, b1] = held[j];
        int32_t first_new = n0, at = 0;
        if (b0 <= n0 && n0 < b1) {  // slide: keep the rows the next tile still reads
          at = slot[j] + (n0 - b0);
          if (at + (n1 - n0) > l.band_rows) {  // out of room: move them to the front
            std::memmove(band, band + at * l.row_floats, sizeof(float) * (b1 - n0) * l.row_floats);
            at = 0;
          }
          first_new = b1;
        }
        float* origin = band + static_cast<int64_t>(at - n0) * l.row_floats;
        if (first_new < n1)
          l.conv->run({in, l.in_h, l.in_w, in_ld}, origin, l.out_c, res, res_ld, first_new, n1);
        held[j] = {n0, n1};
        slot[j] = at;
        in = origin;
        in_ld = l.out_c;
      }
    }
  };
  step->out = add_output(out_name, y);
  steps_.push_back(std::move(step));
}

// A tensor whose pixels lie a multiple of 1 KB apart (C a multiple of 256: V1's 256, 512 and
// 1024 channels) would have a 3x3 depthwise window's pixels, at one channel offset, share one
// to four L1 sets (a set repeats every 4 KB): 30-54 lines in 8-32 ways, so the window misses
// L1 at every channel vector. One extra cache line per pixel spreads them over the sets
// (AVX2, Zen 3: 7x7x1024 dw 3x faster, 14x14x512 s2 2.2x, 28x28x256 s2 1.3x; 1x1 GEMMs on
// such strides within noise). Only tensors whose writer and readers all take any stride.
void Plan::pad_pixel_strides() {
  std::vector<bool> eligible(tensors_.size(), true);
  eligible[input_] = eligible[root(output_)] = false;
  for (size_t t = 0; t < tensors_.size(); ++t)
    if (tensors_[t].alias_of >= 0) eligible[t] = eligible[root(static_cast<int>(t))] = false;
  for (const auto& step : steps_) {
    if (step->any_ld) continue;
    for (int t : step->in) eligible[root(t)] = false;
    eligible[root(step->out)] = false;
  }
  for (size_t t = 0; t < tensors_.size(); ++t) {
    Tensor& x = tensors_[t];
    if (eligible[t] && x.ld == 0 && x.c % 256 == 0 && static_cast<int64_t>(x.h) * x.w > 1)
      x.ld = x.c + 16;
  }
}

// Greedy by size (TFLite's arena planner): the largest tensors are placed first, each at the
// lowest 64-byte aligned offset where it overlaps no placed tensor that is alive at the same
// time. Views (flatten/reshape) share their root's buffer and extend its lifetime.
void Plan::plan_memory() {
  const int n = static_cast<int>(tensors_.size());
  for (Tensor& t : tensors_) t.first = INT32_MAX, t.last = -1;
  tensors_[input_].first = -1;
  for (size_t s = 0; s < steps_.size(); ++s) {
    const int i = static_cast<int>(s);
    Tensor& out = tensors_[root(steps_[s]->out)];
    out.first = std::min(out.first, i);
    out.last = std::max(out.last, i);
    for (int t : steps_[s]->in) tensors_[root(t)].last = std::max(tensors_[root(t)].last, i);
    if (steps_[s]->scratch >= 0) tensors_[steps_[s]->scratch].first = tensors_[steps_[s]->scratch].last = i;
  }
  tensors_[root(output_)].last = static_cast<int>(steps_.size());
  for (const Tensor& t : tensors_)  // a hostile header must not make us allocate terabytes
    require(t.stored_floats() <= (int64_t{1} << 28), "a tensor of " + std::to_string(t.h) + "x" +
                                                 std::to_string(t.w) + "x" + std::to_string(t.c) +
                                                 " floats is larger than 1 GiB");
  std::vector<int> order;
  for (int t = 0; t < n; ++t)
    if (tensors_[t].alias_of < 0 && t != input_) order.push_back(t);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return tensors_[a].stored_floats() > tensors_[b].stored_floats();
  });
  auto aligned = [](int64_t f) { return (f + 15) / 16 * 16; };
  std::vector<int> placed;
  arena_floats_ = 0;
  for (int t : order) {
    Tensor& cur = tensors_[t];
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (int o : placed) {
      const Tensor& other = tensors_[o];
      if (other.first <= cur.last && cur.first <= other.last)
        busy.emplace_back(other.offset, other.offset + aligned(other.stored_floats()));
    }
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& [lo, hi] : busy) {
      if (offset + aligned(cur.stored_floats()) <= lo) break;
      offset = std::max(offset, hi);
    }
    cur.offset = offset;
    arena_floats_ = std::max(arena_floats_, offset + aligned(cur.stored_floats()));
    placed.push_back(t);
  }
  arenas_.clear();
  arenas_.emplace_back(arena_floats_);
}

// Whether no float of x[0, n) is NaN or +-Inf (exponent bits all ones): integer compares,
// which the compiler vectorises (~10 us for a 224x224x3 image).
static bool all_finite(const float* x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad |= (bits & 0x7F800000u) == 0x7F800000u;
  }
  return bad == 0;
}

bool Plan::run_steps(const Frame& f, bool split, size_t end) {
  if (!all_finite(f.input, tensors_[input_].floats())) return false;
  for (size_t s = 0; s < end; ++s) run_step(f, *steps_[s], split);
  if (split) update_caller_share();  // (whole images run on several threads at once unsplit)
  return true;
}

void Plan::run_images(const float* x, int64_t batch, size_t end,
                      const std::function<void(int64_t, const Frame&, bool)>& done) {
  const int64_t in_floats = tensors_[input_].floats();
  const int threads = pool_.size();
  int64_t i = 0;
  if (threads > 1 && batch >= threads) {
    // Whole images per thread: no synchronisation between steps, and small layers (which
    // split badly over rows) keep every thread busy. Each thread owns one arena.
    while (static_cast<int>(arenas_.size()) < threads) arenas_.emplace_back(arena_floats_);
    const int64_t whole = batch - batch % threads;
    pool_.parallel_for(whole, [&](int64_t image, int thread) {
      const Frame f{this, arenas_[thread].data(), x + image * in_floats};
      done(image, f, run_steps(f, false, end));
    });
    i = whole;
  }
  for (; i < batch; ++i) {
    const Frame f{this, arenas_[0].data(), x + i * in_floats};
    done(i, f, run_steps(f, threads > 1, end));
  }
}

void Plan::run_step(const Frame& f, Step& step, bool split) {
  const int64_t tasks = step.chunked ? std::min<int64_t>(step.rows, pool_.size())
                                     : row_tasks(step.rows / step.grain, pool_.size());
  if (step.prepare) step.prepare(f);
  if (!split || !step.parallel || tasks <= 1) {
    step.run(f, 0, step.rows, 0);
    return;
  }
  if (pool_.size() == 2 && !step.chunked) return run_in_two(f, step);
  pool_.parallel_for(tasks, [&](int64_t task, int thread) {
    const auto [r0, r1] = task_rows(task, tasks, step.rows);
    step.run(f, r0, r1, thread);
  });
}

// Two threads split a step in two parts, the caller's [0, cut) and the worker's [cut, rows),
// instead of 8 tasks claimed dynamically. Each core then keeps the same part of every tensor
// from step to step (a step mostly reads what its own core wrote) and a GEMM's weights are
// read twice, not 8 times. Measured on a 2-vCPU Zen 3 VM, V2: the two threads' work added up
// to 1.2-1.35x a one-thread step with 8 tasks (2x for 14x14 depthwise steps whose input the
// other core wrote), 1.1x with two parts. Whole models, against 8 tasks: 0.93-1.01x the time
// (median 0.974 over 13 interleaved A/B runs of V1, V2, V3-S and V3-L).
// The vCPUs of a VM run at different speeds from minute to minute, so the cut follows them:
// after each image, the caller's share moves towards the split that would have finished both
// parts at once. A part the worker has not started when the caller is done, the caller runs.
void Plan::run_in_two(const Frame& f, Step& step) {
  const int64_t units = step.rows / step.grain;  // >= 2 (run_step)
  const int64_t caller_units =
      std::min(units - 1, std::max<int64_t>(1, std::llround(caller_share_ * units)));
  const int32_t cut = static_cast<int32_t>(caller_units * step.grain);
  double seconds[2] = {0, 0}, work[2] = {0, 0};
  pool_.parallel_for(2, [&](int64_t part, int thread) {
    const int32_t r0 = part == 0 ? 0 : cut, r1 = part == 0 ? cut : step.rows;
    const auto start = std::chrono::steady_clock::now();
    step.run(f, r0, r1, thread);
    seconds[thread] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    work[thread] += static_cast<double>(r1 - r0) / step.rows;
  });
  const double weight = seconds[0] + seconds[1];  // long steps count for more
  for (int t = 0; t < 2; ++t) part_seconds_[t] += seconds[t], part_work_[t] += work[t] * weight;
}

void Plan::update_caller_share() {
  if (part_seconds_[0] > 0 && part_seconds_[1] > 0 && part_work_[0] > 0 && part_work_[1] > 0) {
    const double caller = part_work_[0] / part_seconds_[0], worker = part_work_[1] / part_seconds_[1];
    caller_share_ = std::min(0.8, std::max(0.2, 0.7 * caller_share_ + 0.3 * caller / (caller + worker)));
  }
  part_seconds_[0] = part_seconds_[1] = part_work_[0] = part_work_[1] = 0;
}

void Plan::run(const float* x, int64_t batch, float* y) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  ThreadPool::Busy busy(pool_);  // no worker sleeps between two steps of this call
  const int64_t out_floats = tensors_[output_].floats();
  if (batch > 1 && tail_begin_ < steps_.size()) {
    const int64_t in_floats = tensors_[input_].floats();
    for (int64_t i = 0; i < batch; i += kTailBatch) {
      const int64_t n = std::min(kTailBatch, batch - i);
      run_batch_tail(x + i * in_floats, n, y + i * out_floats);
    }
    return;
  }
  run_images(x, batch, steps_.size(), [&](int64_t image, const Frame& f, bool ran) {
    float* out = y + image * out_floats;
    if (ran)
      std::memcpy(out, f.at(output_), sizeof(float) * out_floats);
    else
      std::fill_n(out, out_floats, std::numeric_limits<float>::quiet_NaN());
  });
}

// The tail of a network after its last step that sees more than one pixel: linear layers
// (and views of their outputs) in one chain from a vector to the output. Run per image, each
// would read all its weights once per image (V3-Large's two classifier layers, 10 MB, about
// 1 ms of a 9 ms image); run on the batch's vectors together, once per kTailBatch images.
// Linear layers give every row the bits it gets alone (GemmArgs::gemv_order), so results
// do not depend on the batch size.
void Plan::find_batch_tail() {
  tail_begin_ = steps_.size();
  int next = root(output_);  // the tensor the step before must write
  bool linear = false;
  for (size_t s = steps_.size(); s-- > 0;) {
    const Step& step = *steps_[s];
    if (step.in.size() != 1 || root(step.out) != next) break;
    if (step.fc) {
      next = root(step.in[0]), linear = true;
    } else if (tensors_[step.out].alias_of < 0) {
      break;  // neither a linear layer nor a view
    }
    tail_begin_ = s;
  }
  const Tensor& staged = tensors_[next];
  if (!linear || tail_begin_ == 0 || next == input_ || staged.ld != 0) {
    tail_begin_ = steps_.size();
    return;
  }
  tail_input_ = next;
  tail_rows_.assign(tensors_.size(), -1);
  tail_row_floats_ = 0;
  auto place = [&](int t) {
    if (tail_rows_[t] >= 0) return;
    tail_rows_[t] = tail_row_floats_;
    tail_row_floats_ += (tensors_[t].floats() + 15) / 16 * 16;
  };
  place(next);
  for (size_t s = tail_begin_; s < steps_.size(); ++s) place(root(steps_[s]->out));
}

void Plan::run_batch_tail(const float* x, int64_t n, float* y) {
  if (tail_batch_.size() < n * tail_row_floats_)
    tail_batch_ = AlignedFloats(kTailBatch * tail_row_floats_, /*heap=*/true);
  // Tensor t of image i at rows(t) + i * floats(t): each tensor's n rows are contiguous.
  auto rows = [&](int t) { return tail_batch_.data() + n * tail_rows_[root(t)]; };
  std::vector<char> ran(n);
  const int64_t staged_floats = tensors_[tail_input_].floats();
  run_images(x, n, tail_begin_, [&](int64_t image, const Frame& f, bool ok) {
    ran[image] = ok;
    float* row = rows(tail_input_) + image * staged_floats;
    if (ok)
      std::memcpy(row, f.at(tail_input_), sizeof(float) * staged_floats);
    else
      std::fill_n(row, staged_floats, 0.0f);  // (its outputs become NaN below)
  });
  for (size_t s = tail_begin_; s < steps_.size(); ++s) {
    const Step& step = *steps_[s];
    if (!step.fc) continue;  // a view: the same rows
    const Linear& fc = *step.fc;
    const float* in = rows(step.in[0]);
    float* out = rows(step.out);
    const int32_t block = fc.column_block(), parts = (fc.out_features() + block - 1) / block;
    auto columns = [&](int32_t p0, int32_t p1) {
      fc.run(in, fc.in_features(), out, fc.out_features(), n, p0 * block,
             std::min(fc.out_features(), p1 * block));
    };
    const int64_t tasks = std::min<int64_t>(parts, pool_.size());
    if (tasks <= 1) {
      columns(0, parts);
    } else {
      pool_.parallel_for(tasks, [&](int64_t task, int) {
        const auto [p0, p1] = task_rows(task, tasks, parts);
        columns(p0, p1);
      });
    }
  }
  const int64_t out_floats = tensors_[output_].floats();
  for (int64_t i = 0; i < n; ++i) {
    if (ran[i])
      std::memcpy(y + i * out_floats, rows(output_) + i * out_floats, sizeof(float) * out_floats);
    else
      std::fill_n(y + i * out_floats, out_floats, std::numeric_limits<float>::quiet_NaN());
  }
}

std::vector<double> Plan::profile(const float* x, int repeats) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  ThreadPool::Busy busy(pool_);
  std::vector<double> seconds(steps_.size(), 0.0);
  const Frame f{this, arenas_[0].data(), x};
  for (int r = 0; r < repeats; ++r) {
    for (size_t s = 0; s < steps_.size(); ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      run_step(f, *steps_[s], pool_.size() > 1);
      seconds[s] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    update_caller_share();
  }
  return seconds;
}

}  // namespace tmn
