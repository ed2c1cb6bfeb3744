#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace kedge {

void init_logging(std::string_view level) {
  auto logger = spdlog::stderr_logger_mt("kedge");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace kedge
