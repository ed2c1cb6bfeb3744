#include "k8s/json_text.h"

#include <simdjson.h>

namespace kedge::k8s {
namespace {

using nlohmann::json;

json convert(simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      json out(json::value_t::object);
      auto& object = out.get_ref<json::object_t&>();
      for (simdjson::dom::key_value_pair field : simdjson::dom::object(e))
        object.insert_or_assign(std::string(field.key), convert(field.value));
      return out;
    }
    case simdjson::dom::element_type::ARRAY: {
      json out(json::value_t::array);
      auto& array = out.get_ref<json::array_t&>();
      simdjson::dom::array elements(e);
      array.reserve(elements.size());
      for (simdjson::dom::element value : elements) array.push_back(convert(value));
      return out;
    }
    case simdjson::dom::element_type::STRING:
      return json(std::string(std::string_view(e)));
    case simdjson::dom::element_type::INT64: {
      auto n = int64_t(e);
      // nlohmann's parser makes every non-negative integer unsigned.
      return n >= 0 ? json(static_cast<uint64_t>(n)) : json(n);
    }
    case simdjson::dom::element_type::UINT64:
      return json(uint64_t(e));
    case simdjson::dom::element_type::DOUBLE:
      return json(double(e));
    case simdjson::dom::element_type::BOOL:
      return json(bool(e));
    case simdjson::dom::element_type::NULL_VALUE:
      break;
  }
  return json();
}

}  // namespace

json parse_json(std::string_view text) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  if (parser.parse(padded).get(root) != simdjson::SUCCESS) return json::parse(text, nullptr, false);
  return convert(root);
}

}  // namespace kedge::k8s
