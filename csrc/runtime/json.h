// A small JSON reader for the .tmn header (the C++-only loader and the compiled plan read the
// graph from it). Strict RFC 8259 parsing into a tree; depth and size are bounded so a
// hostile header cannot exhaust the stack. Errors throw std::invalid_argument with the
// byte offset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tmn {
namespace json {

class Value {
 public:
  enum class Type { null, boolean, number, string, array, object };

  Value() = default;
  static Value parse(const std::string& text);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_number() const { return type_ == Type::number; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }
  // A number written without fraction or exponent ("3", not "3.0"): Python's json makes it an int.
  bool is_integer_literal() const { return integer_; }

  // Typed accessors throw std::invalid_argument naming `what` when the type is wrong.
  bool as_bool(const char* what = "value") const;
  double as_number(const char* what = "value") const;
  int64_t as_int(const char* what = "value") const;  // must be integral
  const std::string& as_string(const char* what = "value") const;
  const std::vector<Value>& as_array(const char* what = "value") const;

  // Object members in document order: the count (throws naming `what` if not an object),
  // then member i's key and value.
  size_t member_count(const char* what = "value") const;
  const std::string& member_key(size_t i) const { return keys_[i]; }
  const Value& member_value(size_t i) const { return items_[i]; }
  // Object member access: `at` throws if missing, `find` returns null if missing.
  const Value& at(const std::string& key) const;
  const Value* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }

 private:
  friend class Parser;
  static constexpr size_t kScanMembers = 8;  // objects this small are searched linearly
  Type type_ = Type::null;
  bool bool_ = false;
  bool integer_ = false;
  double number_ = 0.0;
  std::string string_;
  // Flat storage (a header has thousands of values: no tree node per member). items_: the
  // elements of an array or the member values of an object; keys_: an object's keys, in
  // the same order; by_key_: member indices sorted by key, for objects too large to scan.
  std::vector<Value> items_;
  std::vector<std::string> keys_;
  std::vector<uint32_t> by_key_;
};

}  // namespace json
}  // namespace tmn
