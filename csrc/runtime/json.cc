#include "runtime/json.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace tmn {
namespace json {

namespace {
constexpr int kMaxDepth = 64;
const char* type_name(Value::Type t) {
  switch (t) {
    case Value::Type::null: return "null";
    case Value::Type::boolean: return "a boolean";
    case Value::Type::number: return "a number";
    case Value::Type::string: return "a string";
    case Value::Type::array: return "an array";
    case Value::Type::object: return "an object";
  }
  return "?";
}
[[noreturn]] void wrong_type(const char* what, const char* want, Value::Type got) {
  throw std::invalid_argument(std::string(what) + " must be " + want + ", got " +
                              type_name(got));
}
}  // namespace

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Value parse_document() {
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw std::invalid_argument("JSON: " + msg + " at byte " + std::to_string(pos_));
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' ||
                                s_[pos_] == '\t'))
      ++pos_;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void literal(const char* word) {
    for (const char* p = word; *p; ++p) {
      if (peek() != *p) fail(std::string("invalid literal, expected ") + word);
      ++pos_;
    }
  }

  Value parse_value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    skip_ws();
    Value v;
    switch (peek()) {
      case '{': parse_object(v, depth); break;
      case '[': parse_array(v, depth); break;
      case '"': v.type_ = Value::Type::string, v.string_ = parse_string(); break;
      case 't': literal("true"), v.type_ = Value::Type::boolean, v.bool_ = true; break;
      case 'f': literal("false"), v.type_ = Value::Type::boolean, v.bool_ = false; break;
      case 'n': literal("null"); break;
      default: {
        const size_t start = pos_;
        v.type_ = Value::Type::number, v.number_ = parse_number();
        v.integer_ = true;
        for (size_t i = start; i < pos_; ++i) v.integer_ = v.integer_ && s_[i] != '.' && s_[i] != 'e' && s_[i] != 'E';
        break;
      }
    }
    return v;
  }

  // Members and elements are first collected on a stack shared by every level, then moved
  // into a vector of exactly their count: one allocation per container instead of a chain
  // of regrowths (a header has a few thousand small objects and arrays).
  void parse_object(Value& v, int depth) {
    v.type_ = Value::Type::object;
    expect('{');
    skip_ws();
    if (peek() == '}') return void(++pos_);
    const size_t base = values_.size(), key_base = keys_.size();
    for (;;) {
      skip_ws();
      keys_.push_back(parse_string());
      skip_ws();
      expect(':');
      values_.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') { ++pos_; continue; }
      expect('}');
      break;
    }
    v.keys_.assign(std::make_move_iterator(keys_.begin() + key_base),
                   std::make_move_iterator(keys_.end()));
    keys_.resize(key_base);
    take_values(v, base);
    index_object(v);
  }

  void take_values(Value& v, size_t base) {
    v.items_.assign(std::make_move_iterator(values_.begin() + base),
                    std::make_move_iterator(values_.end()));
    values_.resize(base);
  }

  // Duplicate keys are an error; objects of more than kScanMembers members get a sorted index.
  void index_object(Value& v) {
    const std::vector<std::string>& keys = v.keys_;
    if (keys.size() <= Value::kScanMembers) {
      for (size_t i = 1; i < keys.size(); ++i)
        for (size_t j = 0; j < i; ++j)
          if (keys[i] == keys[j]) fail("duplicate key");
      return;
    }
    v.by_key_.resize(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) v.by_key_[i] = static_cast<uint32_t>(i);
    std::sort(v.by_key_.begin(), v.by_key_.end(),
              [&](uint32_t a, uint32_t b) { return keys[a] < keys[b]; });
    for (size_t i = 1; i < keys.size(); ++i)
      if (keys[v.by_key_[i]] == keys[v.by_key_[i - 1]]) fail("duplicate key");
  }

  void parse_array(Value& v, int depth) {
    v.type_ = Value::Type::array;
    expect('[');
    skip_ws();
    if (peek() == ']') return void(++pos_);
    const size_t base = values_.size();
    for (;;) {
      values_.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') { ++pos_; continue; }
      expect(']');
      break;
    }
    take_values(v, base);
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= c - '0';
      else if (c >= 'a' && c <= 'f') code |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') code |= c - 'A' + 10;
      else fail("bad \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      // Plain characters are appended a run at a time (headers are mostly names).
      size_t end = pos_;
      while (end < s_.size() && s_[end] != '"' && s_[end] != '\\' &&
             static_cast<unsigned char>(s_[end]) >= 0x20)
        ++end;
      out.append(s_, pos_, end - pos_);
      pos_ = end;
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { out += c; continue; }
      if (pos_ >= s_.size()) fail("unterminated escape");
      switch (s_[pos_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // surrogate pair
            if (peek() != '\\') fail("lone surrogate");
            ++pos_;
            expect('u');
            const unsigned low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }

  double parse_number() {
    const size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("unexpected character");
    }
    if (peek() == '.') {
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("bad number");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("bad number");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    // Integers of up to 15 digits (shapes, offsets: most of a header) are exact in a double;
    // anything else goes through strtod.
    if (pos_ - start <= 15) {
      bool negative = s_[start] == '-';
      int64_t integer = 0;
      size_t i = start + negative;
      for (; i < pos_ && s_[i] >= '0' && s_[i] <= '9'; ++i) integer = integer * 10 + (s_[i] - '0');
      if (i == pos_) return negative ? -static_cast<double>(integer) : static_cast<double>(integer);
    }
    const std::string token = s_.substr(start, pos_ - start);
    const double value = std::strtod(token.c_str(), nullptr);
    if (!std::isfinite(value)) fail("number out of range");
    return value;
  }

  const std::string& s_;
  size_t pos_ = 0;
  // Keys of every open object and values of every open container parsed so far.
  std::vector<std::string> keys_;
  std::vector<Value> values_;
};

// Byte offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlongs, no
// surrogates, at most U+10FFFF), or npos. JSON text is UTF-8, and every string of the
// document may end up in an error message or a Python str.
static size_t invalid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    if (c < 0x80 && i + 8 <= s.size()) {  // 8 ASCII bytes at a time (headers are mostly ASCII)
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if (!(word & 0x8080808080808080ull)) {
        i += 8;
        continue;
      }
    }
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return i;
    unsigned cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const unsigned char d = s[i + k];
      if ((d >> 6) != 0x2) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const unsigned kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

Value Value::parse(const std::string& text) {
  const size_t bad = invalid_utf8(text);
  if (bad != std::string::npos)
    throw std::invalid_argument("JSON: invalid UTF-8 at byte " + std::to_string(bad));
  return Parser(text).parse_document();
}

bool Value::as_bool(const char* what) const {
  if (type_ != Type::boolean) wrong_type(what, "a boolean", type_);
  return bool_;
}
double Value::as_number(const char* what) const {
  if (type_ != Type::number) wrong_type(what, "a number", type_);
  return number_;
}
int64_t Value::as_int(const char* what) const {
  const double d = as_number(what);
  if (d != std::floor(d) || std::fabs(d) > 9.0e15)
    throw std::invalid_argument(std::string(what) + " must be an integer");
  return static_cast<int64_t>(d);
}
const std::string& Value::as_string(const char* what) const {
  if (type_ != Type::string) wrong_type(what, "a string", type_);
  return string_;
}
const std::vector<Value>& Value::as_array(const char* what) const {
  if (type_ != Type::array) wrong_type(what, "an array", type_);
  return items_;
}
size_t Value::member_count(const char* what) const {
  if (type_ != Type::object) wrong_type(what, "an object", type_);
  return keys_.size();
}
const Value* Value::find(const std::string& key) const {
  if (type_ != Type::object) return nullptr;
  if (by_key_.empty()) {
    for (size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] == key) return &items_[i];
    return nullptr;
  }
  auto it = std::lower_bound(by_key_.begin(), by_key_.end(), key,
                             [&](uint32_t i, const std::string& k) { return keys_[i] < k; });
  return it != by_key_.end() && keys_[*it] == key ? &items_[*it] : nullptr;
}
const Value& Value::at(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw std::invalid_argument("missing key '" + key + "'");
  return *v;
}

}  // namespace json
}  // namespace tmn
