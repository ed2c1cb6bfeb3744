#pragma once

#include "common/result.h"

#include <string>
#include <string_view>
#include <vector>

namespace kedge::l4 {

struct CommandOutput {
  int exit_code = 0;
  std::string output;  // stdout and stderr together
};

/// Runs a program (looked up in PATH) with `input` on its standard input and waits for it.
/// An error only when it cannot be started; any exit code is an output.
/// Thread: any.
Result<CommandOutput> run_command(const std::vector<std::string>& argv,
                                  std::string_view input = {});

}  // namespace kedge::l4
