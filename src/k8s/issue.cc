#include "k8s/issue.h"

#include <fmt/format.h>

namespace kedge::k8s {

std::string Issue::to_string() const {
  std::string out;
  if (!file.empty()) out += line > 0 ? fmt::format("{}:{}: ", file, line) : file + ": ";
  if (!kind.empty()) {
    out += kind;
    if (!name.empty()) out += namespace_.empty() ? " " + name : " " + namespace_ + "/" + name;
    out += ": ";
  }
  if (!field.empty()) out += field + ": ";
  out += message;
  return out;
}

}  // namespace kedge::k8s
