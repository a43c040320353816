// A small JSON reader for the .tmn header (the C++-only loader and the compiled plan read the
// graph from it). Strict RFC 8259 parsing into a tree; depth and size are bounded so a
// hostile header cannot exhaust the stack. Errors throw std::invalid_argument with the
// byte offset.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
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
  const std::map<std::string, Value>& as_object(const char* what = "value") const;

  // Object member access: `at` throws if missing, `find` returns null if missing.
  const Value& at(const std::string& key) const;
  const Value* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }

 private:
  friend class Parser;
  Type type_ = Type::null;
  bool bool_ = false;
  bool integer_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Value> array_;
  std::map<std::string, Value> object_;
};

}  // namespace json
}  // namespace tmn
