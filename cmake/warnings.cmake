# Every kedge target gets the same strict warnings; third-party code is built without them.
add_library(kedge_options INTERFACE)
target_compile_options(kedge_options INTERFACE
  -Wall -Wextra -Werror -Wnon-virtual-dtor -Wno-missing-field-initializers
  $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> $<$<CXX_COMPILER_ID:Clang>:-Wshadow-uncaptured-local>
  # g++ 12 reports a false mismatched-new-delete inside Asio's coroutine frame allocator.
  $<$<CXX_COMPILER_ID:GNU>:-Wno-mismatched-new-delete>)
target_include_directories(kedge_options INTERFACE ${PROJECT_SOURCE_DIR}/src)
if(KEDGE_SANITIZE)
  target_compile_options(kedge_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=undefined)
  target_link_options(kedge_options INTERFACE -fsanitize=address,undefined)
endif()
