# KEDGE_FUZZ: everything is built with libFuzzer's coverage instrumentation, AddressSanitizer and
# UndefinedBehaviorSanitizer (llhttp included), and only the harnesses of tests/fuzz are added.
# Build them with `ninja fuzzers`; scripts/fuzz.sh builds and runs them.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR CMAKE_CXX_COMPILER_VERSION VERSION_LESS 16)
  message(FATAL_ERROR "KEDGE_FUZZ needs clang 16 or newer (CXX=clang++-16)")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
# libstdc++ 12 offers std::expected only when __cpp_concepts says P0848 (conditionally trivial
# special members), which clang 16 implements but does not yet announce.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-U__cpp_concepts> $<$<COMPILE_LANGUAGE:CXX>:-D__cpp_concepts=202002L>)
# clang only: a private field g++ does not flag must not stop the fuzz build.
target_compile_options(kedge_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-unused-private-field>)
