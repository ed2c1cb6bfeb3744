#include "k8s/watch_stream.h"

#include "k8s/json_text.h"

#include <fmt/format.h>

namespace kedge::k8s {

using nlohmann::json;

Result<WatchEvent> parse_watch_event(std::string_view line) {
  json doc = parse_json(line);
  if (doc.is_discarded() || !doc.is_object())
    return fail(fmt::format("watch event is not a JSON object: {:.80}", line));
  auto type = doc.find("type");
  auto object = doc.find("object");
  if (type == doc.end() || !type->is_string()) return fail("watch event without a type");
  if (object == doc.end() || !object->is_object())
    return fail(fmt::format("watch event {} without an object", type->get<std::string>()));
  WatchEvent event;
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "ADDED")
    event.type = WatchEventType::Added;
  else if (t == "MODIFIED")
    event.type = WatchEventType::Modified;
  else if (t == "DELETED")
    event.type = WatchEventType::Deleted;
  else if (t == "BOOKMARK")
    event.type = WatchEventType::Bookmark;
  else if (t == "ERROR")
    event.type = WatchEventType::Error;
  else
    return fail(fmt::format("unknown watch event type \"{}\"", t));
  event.object = std::move(*object);
  return event;
}

ApiStatus api_status_of(const json& status) {
  ApiStatus out;
  if (!status.is_object()) return out;
  if (auto it = status.find("code"); it != status.end() && it->is_number_integer())
    out.code = it->get<int>();
  if (auto it = status.find("reason"); it != status.end() && it->is_string())
    out.reason = it->get<std::string>();
  if (auto it = status.find("message"); it != status.end() && it->is_string())
    out.message = it->get<std::string>();
  return out;
}

std::string resource_version_of(const json& object) {
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) return "";
  auto rv = md->find("resourceVersion");
  return rv != md->end() && rv->is_string() ? rv->get<std::string>() : "";
}

}  // namespace kedge::k8s
