# Warning flags as an INTERFACE target: every first-party target links it, nothing global.
add_library(hookrelay_warnings INTERFACE)
target_compile_options(hookrelay_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${HOOKRELAY_WERROR}>:-Werror>)
if(HOOKRELAY_SANITIZE)
  target_compile_options(hookrelay_warnings INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(hookrelay_warnings INTERFACE -fsanitize=address,undefined)
endif()

# One library per folder: every .cpp except main.cpp; the folder name is the target prefix.
function(hookrelay_module name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
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
