# All dependencies come from Debian 12 packages (see scripts/setup.sh).
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(simdjson 3 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)

# llhttp: Debian's node-llhttp ships the generated C sources; they must be compiled as C.
set(LLHTTP_DIR /usr/share/llhttp CACHE PATH "llhttp C sources")
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp CACHE PATH "llhttp header")
add_library(llhttp STATIC ${LLHTTP_DIR}/llhttp.c ${LLHTTP_DIR}/api.c ${LLHTTP_DIR}/http.c)
target_include_directories(llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
set_target_properties(llhttp PROPERTIES C_STANDARD 99 POSITION_INDEPENDENT_CODE ON)

add_library(kedge_asio INTERFACE)
target_link_libraries(kedge_asio INTERFACE Boost::headers Threads::Threads)
# Each request runs a handful of nested coroutines; asio recycles their frames per thread, but
# only two by default, so the rest went to the heap on every request. Every target gets the same
# value (it sizes a structure in asio's headers).
target_compile_definitions(kedge_asio INTERFACE BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_BOOST_REGEX
                           BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE=16)

# nghttp2: the HTTP/2 framing layer (Debian's libnghttp2-dev).
find_package(PkgConfig REQUIRED)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
# libyaml (Debian's libyaml-dev) reads YAML manifests: the parser Kubernetes' own YAML reader
# (go-yaml) was ported from; yaml-cpp took 1.9 times as long to read 10,000 Ingresses
# (bench/README.md).
pkg_check_modules(LIBYAML REQUIRED IMPORTED_TARGET yaml-0.1)
# liburing (Debian's liburing-dev): a worker hands the sends and receives of one round of its
# event loop to the kernel in one system call (src/common/ring.h).
pkg_check_modules(LIBURING REQUIRED IMPORTED_TARGET liburing)

# mimalloc (Debian's libmimalloc-dev) is the heap of the kedge binary: the proxy allocates small
# blocks per request and per HTTP/2 stream, and glibc's malloc spent 12% of the instructions of a
# proxied HTTP/2 request there (bench/README.md). Sanitizer builds keep the sanitizer's allocator.
if(NOT KEDGE_SANITIZE AND NOT KEDGE_FUZZ)
  find_library(MIMALLOC_LIBRARY NAMES mimalloc REQUIRED)
endif()
