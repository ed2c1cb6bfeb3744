#include "http1/message_head.h"

namespace kedge::http1 {

namespace {
constexpr size_t kTypicalBytes = 1024;
}  // namespace

void MessageHead::clear() {
  storage_.clear();
  fields_.clear();
  method_ = target_ = reason_ = {};
  status = 0;
  version_major = version_minor = 1;
  in_value_ = false;
}

void MessageHead::append(Span& span, std::string_view s) {
  // Room for a typical head at the first byte (not before: an idle connection stays small), so
  // that parsing one allocates twice instead of at every few fields. clear() keeps it.
  if (storage_.capacity() < kTypicalBytes) storage_.reserve(kTypicalBytes);
  if (span.length == 0) span.offset = static_cast<uint32_t>(storage_.size());
  storage_.append(s);
  span.length += static_cast<uint32_t>(s.size());
}

void MessageHead::append_name(std::string_view s) {
  if (fields_.capacity() < kTypicalFields) fields_.reserve(kTypicalFields);
  if (fields_.empty() || in_value_) {
    fields_.emplace_back();
    fields_.back().name.offset = static_cast<uint32_t>(storage_.size());
    in_value_ = false;
  }
  append(fields_.back().name, s);
}

void MessageHead::append_value(std::string_view s) {
  if (fields_.empty()) return;
  if (!in_value_) fields_.back().value.offset = static_cast<uint32_t>(storage_.size());
  in_value_ = true;
  append(fields_.back().value, s);
}

std::string_view MessageHead::get(std::string_view name, bool* found) const {
  for (const Field& f : fields_) {
    if (iequals(view(f.name), name)) {
      if (found) *found = true;
      return view(f.value);
    }
  }
  if (found) *found = false;
  return {};
}

size_t MessageHead::count(std::string_view name) const {
  size_t n = 0;
  for (const Field& f : fields_) n += iequals(view(f.name), name);
  return n;
}

}  // namespace kedge::http1
