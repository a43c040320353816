// tinymnet._C: the only file that knows pybind11. Argument checking that needs nice messages
// lives in src/tinymnet/kernels.py; here every array is checked again (dtype, contiguity,
// shape) so a direct _C call can never read or write out of bounds. Compute releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "ops/ops.h"
#include "runtime/isa.h"
#include "runtime/json.h"
#include "runtime/plan.h"
#include "runtime/threadpool.h"
#include "runtime/tmn_reader.h"

namespace py = pybind11;
using namespace tmn;

namespace {

using FloatArray = py::array_t<float, py::array::c_style>;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// A C-contiguous float32 array of the given rank (checked, never converted; ndim < 0: any).
// Read through the buffer protocol, not pybind11's numpy support, whose first use in a
// process imports numpy.lib and parses numpy's version (~1 ms of a model's first call).
py::buffer_info float_buffer(const py::handle& obj, const char* name, int ndim, bool writable) {
  const std::string what(name);
  require(PyObject_CheckBuffer(obj.ptr()), what + " must be a numpy array");
  py::buffer_info info;
  try {
    info = py::reinterpret_borrow<py::buffer>(obj).request(writable);
  } catch (const py::error_already_set&) {
    require(false, what + (writable ? " must be writable" : " must be a readable buffer"));
  }
  require(info.itemsize == 4 && info.format == py::format_descriptor<float>::format(),
          what + " must be float32");
  require(ndim < 0 || info.ndim == ndim,
          what + " must have " + std::to_string(ndim) + " dimensions");
  py::ssize_t stride = info.itemsize;  // row-major strides (dims of 1 may have any)
  for (py::ssize_t d = info.ndim; d-- > 0; stride *= info.shape[d])
    require(info.shape[d] == 1 || info.strides[d] == stride, what + " must be C-contiguous");
  return info;
}

// x (N, H, W, C) float32 with contiguous channels and evenly strided pixels: C-contiguous, or a
// channel range big[..., a:b] of a C-contiguous array (read in place). Returns the buffer and
// the pixel stride in floats.
std::pair<py::buffer_info, int64_t> nhwc_view(const py::handle& obj, const char* name) {
  require(py::isinstance<py::array>(obj), std::string(name) + " must be a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  require(arr.dtype().is(py::dtype::of<float>()), std::string(name) + " must be float32");
  require(arr.ndim() == 4, std::string(name) + " must have 4 dimensions");
  if (arr.flags() & py::array::c_style) return {arr.request(), arr.shape(3)};
  py::buffer_info info = arr.request();
  const auto& s = info.strides;
  const auto& d = info.shape;
  require(s[3] == 4 && s[2] % 4 == 0 && s[2] >= 4 * d[3] && s[1] == d[2] * s[2] &&
              s[0] == d[1] * s[1],
          std::string(name) + " must be C-contiguous or a channel slice of a C-contiguous array");
  return {std::move(info), s[2] / 4};
}

const float* optional_floats(const py::object& obj, const char* name, int64_t count) {
  if (obj.is_none()) return nullptr;
  auto info = float_buffer(obj, name, 1, false);
  require(info.shape[0] == count,
          std::string(name) + " must have " + std::to_string(count) + " values");
  return static_cast<const float*>(info.ptr);
}

Activation parse_activation(const std::string& name, float alpha, float beta) {
  Activation a;
  a.alpha = alpha, a.beta = beta;
  if (name.empty() || name == "none") a.kind = ActKind::none;
  else if (name == "relu") a.kind = ActKind::relu;
  else if (name == "relu6") a.kind = ActKind::relu6;
  else if (name == "hardswish") a.kind = ActKind::hardswish;
  else if (name == "hardsigmoid") a.kind = ActKind::hardsigmoid;
  else throw std::invalid_argument("unknown activation '" + name + "'");
  return a;
}

Padding make_padding(const std::vector<int32_t>& pads, bool same) {
  Padding p;
  p.same = same;
  if (!same) {
    require(pads.size() == 4, "padding must be (top, bottom, left, right)");
    p.top = pads[0], p.bottom = pads[1], p.left = pads[2], p.right = pads[3];
  }
  return p;
}

struct Nhwc {
  int64_t n, h, w, c;
};

Nhwc nhwc(const py::buffer_info& b) { return {b.shape[0], b.shape[1], b.shape[2], b.shape[3]}; }

// ---------------------------------------------------------------- Conv2d

class PyConv2d {
 public:
  PyConv2d(const py::object& weight, const py::object& bias, std::pair<int, int> stride,
           std::vector<int32_t> pads, bool same, int groups, const std::string& act, float alpha,
           float beta)
      : op_(make(weight, bias, stride, pads, same, groups, parse_activation(act, alpha, beta))) {}

  std::string kind() const {
    switch (op_->kind()) {
      case Conv2d::Kind::pointwise: return "pointwise";
      case Conv2d::Kind::depthwise: return "depthwise";
      case Conv2d::Kind::stem: return "stem";
      default: return "direct";
    }
  }
  std::string isa() const { return isa_name(op_->isa()); }
  std::pair<int, int> out_hw(int h, int w) const {
    auto g = op_->geometry(h, w);
    return {g.out_h, g.out_w};
  }

  // x (N, H, W, Cin); out (N, OH, OW, Ctotal) written at [channel_offset, +Cout);
  // residual (N, OH, OW, Cout) or None.
  void run(const py::object& x, const py::object& out, int64_t channel_offset,
           const py::object& residual) const {
    auto [xb, x_ld] = nhwc_view(x, "x");
    auto ob = float_buffer(out, "out", 4, true);
    const Nhwc xs = nhwc(xb), os = nhwc(ob);
    require(xs.c == op_->cin(), "x has " + std::to_string(xs.c) + " channels, the conv expects " +
                                    std::to_string(op_->cin()));
    require(xs.h < (1 << 30) && xs.w < (1 << 30), "x is too large");
    const auto g = op_->geometry(static_cast<int32_t>(xs.h), static_cast<int32_t>(xs.w));
    require(os.n == xs.n && os.h == g.out_h && os.w == g.out_w, "out has the wrong shape");
    require(channel_offset >= 0 && channel_offset + op_->cout() <= os.c,
            "channel_offset + out_channels exceeds out's channels");
    const float* res = nullptr;
    if (!residual.is_none()) {
      auto rb = float_buffer(residual, "residual", 4, false);
      const Nhwc rs = nhwc(rb);
      require(rs.n == xs.n && rs.h == g.out_h && rs.w == g.out_w && rs.c == op_->cout(),
              "residual must have the output's shape");
      res = static_cast<const float*>(rb.ptr);
    }
    const float* xp = static_cast<const float*>(xb.ptr);
    float* op = static_cast<float*>(ob.ptr) + channel_offset;
    py::gil_scoped_release release;
    const int64_t in_image = xs.h * xs.w * x_ld, out_image = os.h * os.w * os.c;
    const int64_t res_image = static_cast<int64_t>(g.out_h) * g.out_w * op_->cout();
    for (int64_t i = 0; i < xs.n; ++i)
      op_->run({xp + i * in_image, static_cast<int32_t>(xs.h), static_cast<int32_t>(xs.w), x_ld},
               op + i * out_image, os.c, res ? res + i * res_image : nullptr, op_->cout(), 0,
               g.out_h);
  }

 private:
  static std::unique_ptr<Conv2d> make(const py::object& weight, const py::object& bias,
                                      std::pair<int, int> stride, const std::vector<int32_t>& pads,
                                      bool same, int groups, Activation act) {
    auto wb = float_buffer(weight, "weight", 4, false);
    const int64_t cout = wb.shape[0], cin_g = wb.shape[1], kh = wb.shape[2], kw = wb.shape[3];
    require(groups >= 1, "groups must be >= 1");
    require(cout > 0 && cin_g > 0 && kh > 0 && kw > 0, "weight dimensions must be positive");
    const float* b = optional_floats(bias, "bias", cout);
    return std::make_unique<Conv2d>(static_cast<const float*>(wb.ptr), b, cout, cin_g * groups,
                                    kh, kw, stride.first, stride.second, make_padding(pads, same),
                                    groups, act, current_isa());
  }
  std::unique_ptr<Conv2d> op_;
};

// ---------------------------------------------------------------- Linear

// x (rows, in_features) -> out (rows, out_features), float32.
void run_linear(const Linear& op, const py::object& x, const py::object& y) {
  auto xb = float_buffer(x, "x", 2, false);
  auto yb = float_buffer(y, "out", 2, true);
  require(xb.shape[1] == op.in_features(),
          "x must have " + std::to_string(op.in_features()) + " features");
  require(yb.shape[0] == xb.shape[0] && yb.shape[1] == op.out_features(),
          "out has the wrong shape");
  const float* xp = static_cast<const float*>(xb.ptr);
  float* yp = static_cast<float*>(yb.ptr);
  const int64_t rows = xb.shape[0];
  py::gil_scoped_release release;
  op.run(xp, op.in_features(), yp, op.out_features(), rows);
}

class PyLinear {
 public:
  PyLinear(const py::object& weight, const py::object& bias, const std::string& act, float alpha,
           float beta)
      : op_(make(weight, bias, parse_activation(act, alpha, beta))) {}
  void run(const py::object& x, const py::object& y) const { run_linear(*op_, x, y); }

 private:
  static std::unique_ptr<Linear> make(const py::object& weight, const py::object& bias,
                                      Activation act) {
    auto wb = float_buffer(weight, "weight", 2, false);
    require(wb.shape[0] > 0 && wb.shape[1] > 0, "weight dimensions must be positive");
    const float* b = optional_floats(bias, "bias", wb.shape[0]);
    return std::make_unique<Linear>(static_cast<const float*>(wb.ptr), b, wb.shape[0],
                                    wb.shape[1], act, current_isa());
  }
  std::unique_ptr<Linear> op_;
};

// ---------------------------------------------------------------- Linear on 8-bit weights

class PyLinearQ8 {
 public:
  // q: (out, in) uint8 or int8; scale float32 and zero_point int32, 1 or `out` values each.
  PyLinearQ8(const py::object& q, const py::object& scale, const py::object& zero_point,
             const py::object& bias, const std::string& act, float alpha, float beta) {
    require(py::isinstance<py::array>(q), "q must be a numpy array");
    auto qa = py::reinterpret_borrow<py::array>(q);
    const bool is_signed = qa.dtype().is(py::dtype::of<int8_t>());
    require(is_signed || qa.dtype().is(py::dtype::of<uint8_t>()), "q must be uint8 or int8");
    require(qa.ndim() == 2 && (qa.flags() & py::array::c_style),
            "q must be a C-contiguous (out_features, in_features) array");
    const int64_t out = qa.shape(0), in = qa.shape(1);
    require(out > 0 && in > 0 && out < (int64_t{1} << 31) && in < (int64_t{1} << 31),
            "q dimensions must be positive");
    auto sb = float_buffer(scale, "scale", 1, false);
    require(py::isinstance<py::array_t<int32_t>>(zero_point) &&
                py::reinterpret_borrow<py::array>(zero_point).dtype().is(py::dtype::of<int32_t>()),
            "zero_point must be an int32 array");
    auto za = py::reinterpret_borrow<py::array>(zero_point);
    require(za.ndim() == 1 && (za.flags() & py::array::c_style), "zero_point must be 1-D");
    require(sb.shape[0] == za.shape(0) && (sb.shape[0] == 1 || sb.shape[0] == out),
            "scale and zero_point need 1 or out_features values each");
    const float* b = optional_floats(bias, "bias", out);
    QuantizedWeights w;
    w.q = static_cast<const unsigned char*>(qa.data()), w.is_signed = is_signed;
    w.scale = static_cast<const float*>(sb.ptr), w.zero = static_cast<const int32_t*>(za.data());
    w.per_feature = sb.shape[0] > 1;
    op_ = std::make_unique<Linear>(w, b, static_cast<int32_t>(out), static_cast<int32_t>(in),
                                   parse_activation(act, alpha, beta), current_isa());
  }
  void run(const py::object& x, const py::object& y) const { run_linear(*op_, x, y); }

 private:
  std::unique_ptr<Linear> op_;
};

// ---------------------------------------------------------------- SqueezeExcite

class PySqueezeExcite {
 public:
  PySqueezeExcite(const py::object& w1, const py::object& b1, const py::object& w2,
                  const py::object& b2, const std::string& inner, const std::string& gate,
                  float alpha, float beta)
      : op_(make(w1, b1, w2, b2, parse_activation(inner, alpha, beta),
                 parse_activation(gate, alpha, beta))) {}
  void run(const py::object& x, const py::object& y) const {
    auto xb = float_buffer(x, "x", 4, false);
    auto yb = float_buffer(y, "out", 4, true);
    const Nhwc xs = nhwc(xb), ys = nhwc(yb);
    require(xs.c == op_->channels(), "x must have " + std::to_string(op_->channels()) +
                                         " channels");
    require(ys.n == xs.n && ys.h == xs.h && ys.w == xs.w && ys.c == xs.c,
            "out must have x's shape");
    const float* xp = static_cast<const float*>(xb.ptr);
    float* yp = static_cast<float*>(yb.ptr);
    py::gil_scoped_release release;
    const int64_t pixels = xs.h * xs.w, image = pixels * xs.c;
    for (int64_t i = 0; i < xs.n; ++i) op_->run(xp + i * image, pixels, xs.c, yp + i * image, xs.c);
  }

 private:
  static std::unique_ptr<SqueezeExcite> make(const py::object& w1, const py::object& b1,
                                             const py::object& w2, const py::object& b2,
                                             Activation inner, Activation gate) {
    auto w1b = float_buffer(w1, "w1", 2, false);
    auto w2b = float_buffer(w2, "w2", 2, false);
    const int64_t s = w1b.shape[0], c = w1b.shape[1];
    require(s > 0 && c > 0, "w1 dimensions must be positive");
    require(w2b.shape[0] == c && w2b.shape[1] == s, "w2 must have shape (channels, squeeze)");
    return std::make_unique<SqueezeExcite>(
        static_cast<const float*>(w1b.ptr), optional_floats(b1, "b1", s),
        static_cast<const float*>(w2b.ptr), optional_floats(b2, "b2", c), c, s, inner, gate,
        current_isa());
  }
  std::unique_ptr<SqueezeExcite> op_;
};

// ---------------------------------------------------------------- Pool2d

class PyPool2d {
 public:
  PyPool2d(const std::string& kind, std::pair<int, int> kernel, std::pair<int, int> stride,
           std::vector<int32_t> pads, bool same, bool count_include_pad)
      : op_(kind == "max" ? PoolKind::max : PoolKind::average, kernel.first, kernel.second,
            stride.first, stride.second, make_padding(pads, same), count_include_pad,
            current_isa()) {
    require(kind == "max" || kind == "average", "pool kind must be 'max' or 'average'");
  }
  std::pair<int, int> out_hw(int h, int w) const {
    auto g = op_.geometry(h, w);
    return {g.out_h, g.out_w};
  }
  void run(const py::object& x, const py::object& y) const {
    auto xb = float_buffer(x, "x", 4, false);
    auto yb = float_buffer(y, "out", 4, true);
    const Nhwc xs = nhwc(xb), ys = nhwc(yb);
    const auto g = op_.geometry(static_cast<int32_t>(xs.h), static_cast<int32_t>(xs.w));
    require(ys.n == xs.n && ys.h == g.out_h && ys.w == g.out_w && ys.c == xs.c,
            "out has the wrong shape");
    const float* xp = static_cast<const float*>(xb.ptr);
    float* yp = static_cast<float*>(yb.ptr);
    py::gil_scoped_release release;
    for (int64_t i = 0; i < xs.n; ++i)
      op_.run({xp + i * xs.h * xs.w * xs.c, static_cast<int32_t>(xs.h),
               static_cast<int32_t>(xs.w), xs.c},
              static_cast<int32_t>(xs.c), yp + i * ys.h * ys.w * ys.c, ys.c, 0, g.out_h);
  }

 private:
  Pool2d op_;
};

// ---------------------------------------------------------------- Plan

class PyPlan {
 public:
  // graph_json: tinymnet.graph.graph_to_dict of an optimised graph; params: name -> float32
  // array (copied into packed weights here, so the arrays may be released afterwards).
  PyPlan(const std::string& graph_json, const py::dict& params, int threads, bool fuse_chains) {
    const json::Value graph = json::Value::parse(graph_json);
    ParamMap views;
    for (auto item : params) {
      const std::string name = py::str(item.first);
      auto arr = py::reinterpret_borrow<py::object>(item.second);
      require(py::isinstance<py::array>(arr), "param '" + name + "' must be a numpy array");
      auto a = py::reinterpret_borrow<py::array>(arr);
      auto info = float_buffer(a, ("param '" + name + "'").c_str(), a.ndim(), false);
      ParamView v;
      v.data = static_cast<const float*>(info.ptr);
      v.shape.assign(info.shape.begin(), info.shape.end());
      views[name] = v;
    }
    require(threads >= 1, "threads must be >= 1");
    plan_ = std::make_unique<Plan>(graph, views, threads, current_isa(), fuse_chains);
  }
  // Straight from a mapped .tmn file (its graph already optimised): 8-bit weights are
  // dequantized while packing, no float32 copy of the model ever exists.
  PyPlan(const TmnFile& file, int threads, bool fuse_chains) {
    require(threads >= 1, "threads must be >= 1");
    py::gil_scoped_release release;
    plan_ = std::make_unique<Plan>(file.graph(), file.params(), threads, current_isa(), fuse_chains);
  }
  std::vector<int64_t> input_dims() const { return plan_->input_dims(); }
  std::vector<int64_t> output_dims() const { return plan_->output_dims(); }
  int64_t arena_bytes() const { return plan_->arena_bytes(); }
  int64_t weight_bytes() const { return plan_->weight_bytes(); }
  int64_t mapped_weight_bytes() const { return plan_->mapped_weight_bytes(); }
  int threads() const { return plan_->threads(); }
  void run(const py::object& x, const py::object& y) {
    auto xb = float_buffer(x, "x", 4, false);
    auto yb = float_buffer(y, "out", -1, true);
    const auto& in = plan_->input_dims();
    require(xb.shape[1] == in[0] && xb.shape[2] == in[1] && xb.shape[3] == in[2],
            "x has the wrong image shape");
    const auto& out = plan_->output_dims();
    require(yb.shape[0] == xb.shape[0] && yb.size == xb.shape[0] * out[0] * out[1] * out[2],
            "out has the wrong shape");
    const float* xp = static_cast<const float*>(xb.ptr);
    float* yp = static_cast<float*>(yb.ptr);
    const int64_t batch = xb.shape[0];
    py::gil_scoped_release release;
    plan_->run(xp, batch, yp);
  }
  std::vector<std::string> step_names() const { return plan_->step_names(); }
  size_t batched_steps() const { return plan_->batched_steps(); }
  // Seconds each step took in total over `repeats` runs of the first image of x.
  std::vector<double> profile(const py::object& x, int repeats) {
    auto xb = float_buffer(x, "x", 4, false);
    const auto& in = plan_->input_dims();
    require(xb.shape[0] >= 1 && xb.shape[1] == in[0] && xb.shape[2] == in[1] && xb.shape[3] == in[2],
            "x has the wrong image shape");
    require(repeats >= 1, "repeats must be >= 1");
    const float* xp = static_cast<const float*>(xb.ptr);
    py::gil_scoped_release release;
    return plan_->profile(xp, repeats);
  }

 private:
  std::unique_ptr<Plan> plan_;
};

// A JSON header value as Python objects (dict, list, str, float / int, bool, None).
py::object to_python(const json::Value& v) {
  switch (v.type()) {
    case json::Value::Type::null: return py::none();
    case json::Value::Type::boolean: return py::bool_(v.as_bool());
    case json::Value::Type::number: {
      const double d = v.as_number();
      if (v.is_integer_literal() && std::abs(d) < 9.2e18) return py::int_(static_cast<int64_t>(d));
      return py::float_(d);
    }
    case json::Value::Type::string: return py::str(v.as_string());
    case json::Value::Type::array: {
      py::list out;
      for (const json::Value& x : v.as_array()) out.append(to_python(x));
      return std::move(out);
    }
    case json::Value::Type::object: {
      py::dict out;
      for (size_t i = 0; i < v.member_count(); ++i)
        out[py::str(v.member_key(i))] = to_python(v.member_value(i));
      return std::move(out);
    }
  }
  return py::none();
}

// ---------------------------------------------------------------- free functions

const KernelTable& table() { return kernel_table(current_isa()); }

void global_avg_pool(const py::object& x, const py::object& y) {
  auto xb = float_buffer(x, "x", 4, false);
  auto yb = float_buffer(y, "out", 4, true);
  const Nhwc xs = nhwc(xb), ys = nhwc(yb);
  require(ys.n == xs.n && ys.h == 1 && ys.w == 1 && ys.c == xs.c, "out must be (N, 1, 1, C)");
  const auto& t = table();
  const float* xp = static_cast<const float*>(xb.ptr);
  float* yp = static_cast<float*>(yb.ptr);
  py::gil_scoped_release release;
  for (int64_t i = 0; i < xs.n; ++i)
    t.global_avg_pool(xp + i * xs.h * xs.w * xs.c, xs.h * xs.w, xs.c, xs.c, yp + i * xs.c);
}

void activation(const py::array& x, const py::object& y, const std::string& name, float alpha,
                float beta) {
  auto xb = float_buffer(x, "x", x.ndim(), false);
  auto yb = float_buffer(y, "out", x.ndim(), true);
  require(xb.size == yb.size, "out must have x's shape");
  const Activation a = parse_activation(name, alpha, beta);
  const auto& t = table();
  const float* xp = static_cast<const float*>(xb.ptr);
  float* yp = static_cast<float*>(yb.ptr);
  py::gil_scoped_release release;
  t.activation(xp, yp, xb.size, a);
}

void add(const py::array& a, const py::object& b, const py::object& y, const std::string& name,
         float alpha, float beta) {
  auto ab = float_buffer(a, "a", a.ndim(), false);
  auto bb = float_buffer(b, "b", a.ndim(), false);
  auto yb = float_buffer(y, "out", a.ndim(), true);
  require(ab.shape == bb.shape && ab.shape == yb.shape, "a, b and out must have the same shape");
  const Activation act = parse_activation(name, alpha, beta);
  const auto& t = table();
  const float* ap = static_cast<const float*>(ab.ptr);
  const float* bp = static_cast<const float*>(bb.ptr);
  float* yp = static_cast<float*>(yb.ptr);
  py::gil_scoped_release release;
  t.add(ap, bp, yp, ab.size, act);
}

void mul(const py::object& x, const py::object& s, const py::object& y) {
  auto xb = float_buffer(x, "x", 4, false);
  auto sb = float_buffer(s, "s", 4, false);
  auto yb = float_buffer(y, "out", 4, true);
  const Nhwc xs = nhwc(xb), ss = nhwc(sb);
  require(ss.n == xs.n && ss.h == 1 && ss.w == 1 && ss.c == xs.c, "s must be (N, 1, 1, C)");
  require(xb.shape == yb.shape, "out must have x's shape");
  const auto& t = table();
  const float* xp = static_cast<const float*>(xb.ptr);
  const float* sp = static_cast<const float*>(sb.ptr);
  float* yp = static_cast<float*>(yb.ptr);
  py::gil_scoped_release release;
  const int64_t image = xs.h * xs.w * xs.c;
  for (int64_t i = 0; i < xs.n; ++i)
    t.mul_channels(xp + i * image, sp + i * xs.c, yp + i * image, xs.h * xs.w, xs.c, xs.c);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "tinymnet C++ kernels (NHWC float32)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("isa", [] { return std::string(isa_name(current_isa())); },
        "The ISA new ops bind to (TINYMNET_ISA, or the best this CPU supports).");
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("available_isas", [] {
    std::vector<std::string> names;
    for (Isa isa : available_isas()) names.emplace_back(isa_name(isa));
    return names;
  });
  m.def("set_isa", [](const std::string& name) { set_current_isa(parse_isa(name)); });
  m.def("gemm_panel_width", [] { return kernel_table(current_isa()).gemm_nr; },
        "Panel width of the packed GEMM weights of the current ISA (what a .tmn file may store "
        "them in, to be used in place).");

  py::class_<PyConv2d>(m, "Conv2d")
      .def(py::init<const py::object&, const py::object&, std::pair<int, int>, std::vector<int32_t>,
                    bool, int, const std::string&, float, float>(),
           py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
           py::arg("same"), py::arg("groups"), py::arg("activation"), py::arg("alpha"),
           py::arg("beta"))
      .def_property_readonly("kind", &PyConv2d::kind)
      .def_property_readonly("isa", &PyConv2d::isa)
      .def("out_hw", &PyConv2d::out_hw)
      .def("run", &PyConv2d::run, py::arg("x"), py::arg("out"), py::arg("channel_offset"),
           py::arg("residual"));

  py::class_<PyLinear>(m, "Linear")
      .def(py::init<const py::object&, const py::object&, const std::string&, float, float>(),
           py::arg("weight"), py::arg("bias"), py::arg("activation"), py::arg("alpha"),
           py::arg("beta"))
      .def("run", &PyLinear::run, py::arg("x"), py::arg("out"));

  py::class_<PyLinearQ8>(m, "LinearQ8")
      .def(py::init<const py::object&, const py::object&, const py::object&, const py::object&,
                    const std::string&, float, float>(),
           py::arg("q"), py::arg("scale"), py::arg("zero_point"), py::arg("bias"),
           py::arg("activation"), py::arg("alpha"), py::arg("beta"))
      .def("run", &PyLinearQ8::run, py::arg("x"), py::arg("out"));

  py::class_<PySqueezeExcite>(m, "SqueezeExcite")
      .def(py::init<const py::object&, const py::object&, const py::object&, const py::object&,
                    const std::string&, const std::string&, float, float>(),
           py::arg("w1"), py::arg("b1"), py::arg("w2"), py::arg("b2"), py::arg("inner"),
           py::arg("gate"), py::arg("alpha"), py::arg("beta"))
      .def("run", &PySqueezeExcite::run, py::arg("x"), py::arg("out"));

  py::class_<PyPool2d>(m, "Pool2d")
      .def(py::init<const std::string&, std::pair<int, int>, std::pair<int, int>,
                    std::vector<int32_t>, bool, bool>(),
           py::arg("kind"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
           py::arg("same"), py::arg("count_include_pad"))
      .def("out_hw", &PyPool2d::out_hw)
      .def("run", &PyPool2d::run, py::arg("x"), py::arg("out"));

  py::class_<PyPlan>(m, "Plan")
      .def(py::init<const std::string&, const py::dict&, int, bool>(), py::arg("graph_json"),
           py::arg("params"), py::arg("threads"), py::arg("fuse_chains"))
      .def_property_readonly("input_dims", &PyPlan::input_dims)
      .def_property_readonly("output_dims", &PyPlan::output_dims)
      .def_property_readonly("arena_bytes", &PyPlan::arena_bytes)
      .def_property_readonly("weight_bytes", &PyPlan::weight_bytes)
      .def_property_readonly("mapped_weight_bytes", &PyPlan::mapped_weight_bytes)
      .def_property_readonly("threads", &PyPlan::threads)
      .def_property_readonly("step_names", &PyPlan::step_names)
      .def_property_readonly("batched_steps", &PyPlan::batched_steps)
      .def("profile", &PyPlan::profile, py::arg("x"), py::arg("repeats"))
      .def("run", &PyPlan::run, py::arg("x"), py::arg("out"));
  py::class_<TmnFile>(m, "TmnFile")
      .def(py::init<const std::string&, bool>(), py::arg("path"), py::arg("verify") = true,
           py::call_guard<py::gil_scoped_release>(),
           "Maps a .tmn file and checks its sizes and CRC-32 (ValueError naming the file).")
      .def("header", [](const TmnFile& f, const std::string& key, const py::object& member) {
             const json::Value* v = f.header().find(key);
             if (v && !member.is_none()) v = v->find(member.cast<std::string>());
             return v ? to_python(*v) : py::object(py::none());
           }, py::arg("key"), py::arg("member") = py::none(),
           "One top-level entry of the JSON header, or one member of it (None if absent).")
      .def_property_readonly("crc", &TmnFile::stored_crc)
      .def("plan", [](const TmnFile& f, int threads, bool fuse_chains) {
             try {
               return new PyPlan(f, threads, fuse_chains);
             } catch (const std::invalid_argument& e) {  // name the file, as the reader does
               throw std::invalid_argument(f.path() + ": " + e.what());
             }
           }, py::arg("threads"), py::arg("fuse_chains"),
           "A Plan of the stored graph (which must already be optimised).");
  m.def("crc32", [](const py::buffer& data, uint32_t crc) {
          py::buffer_info b = data.request();
          require(PyBuffer_IsContiguous(b.view(), 'C'), "data must be contiguous");
          const auto* p = static_cast<const unsigned char*>(b.ptr);
          const size_t n = static_cast<size_t>(b.size * b.itemsize);
          py::gil_scoped_release release;
          return crc32(p, n, crc);
        }, py::arg("data"), py::arg("crc") = 0,
        "CRC-32 of a bytes-like object as zlib.crc32 (the .tmn checksum; for tests).");
  m.def("default_threads", &ThreadPool::default_threads,
        "Physical cores of this machine (the default thread count of a model).");

  m.def("global_avg_pool", &global_avg_pool, py::arg("x"), py::arg("out"));
  m.def("activation", &activation, py::arg("x"), py::arg("out"), py::arg("name"), py::arg("alpha"),
        py::arg("beta"));
  m.def("add", &add, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("activation"),
        py::arg("alpha"), py::arg("beta"));
  m.def("mul", &mul, py::arg("x"), py::arg("s"), py::arg("out"));
}
