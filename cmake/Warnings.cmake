# Warning flags as an INTERFACE target: every first-party target links it, nothing global.
add_library(hookrelay_warnings INTERFACE)
target_compile_options(hookrelay_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${HOOKRELAY_WERROR}>:-Werror>)
# Sanitizers ride on the same INTERFACE target, so they apply to first-party code only; the
# system libraries (librdkafka, libpqxx, prometheus-cpp, yaml-cpp, ...) stay as Debian built them.
# -fno-sanitize-recover: the first report ends the process, so a test or a fuzz run cannot pass
# over it.
if(HOOKRELAY_SANITIZE)
  # No vptr check: Boost.Beast's composed operations (stable_async_base, reached through Asio's
  # type-erased any_executor) tripped it once in the descriptor-exhaustion test ("object has
  # invalid vptr" inside beast/core/async_base.hpp) with no first-party frame to act on; ASan still
  # checks every access to that memory.
  target_compile_options(hookrelay_warnings INTERFACE -fsanitize=address,undefined -fno-sanitize=vptr
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(hookrelay_warnings INTERFACE -fsanitize=address,undefined -fno-sanitize=vptr)
endif()
# Fuzzing (clang only): first-party code gets libFuzzer's coverage instrumentation; only the
# harnesses in tests/fuzz link libFuzzer's main (-fsanitize=fuzzer). The same build runs the
# sanitized test suite: the coverage hooks are no-ops outside a fuzzer.
if(HOOKRELAY_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "HOOKRELAY_FUZZ needs clang (e.g. -DCMAKE_CXX_COMPILER=clang++-16)")
  endif()
  if(NOT HOOKRELAY_SANITIZE)
    message(FATAL_ERROR "HOOKRELAY_FUZZ needs HOOKRELAY_SANITIZE=ON: a fuzzer finds what the sanitizers report")
  endif()
  target_compile_options(hookrelay_warnings INTERFACE -fsanitize=fuzzer-no-link)
endif()

# One library per folder (its subfolders included): every .cpp except main.cpp; the folder name
# is the target prefix.
function(hookrelay_module name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  list(FILTER srcs EXCLUDE REGEX "/main\\.cpp$")
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE hookrelay_warnings)
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
endfunction()
