// docs/openapi.yaml, the admin API's contract, as compiled into hookrelay-admin (CMake generates
// the definition from the file at build time) and served at GET /openapi.yaml.
#pragma once

#include <string_view>

namespace hookrelay::admin {

std::string_view openapi_document();

}  // namespace hookrelay::admin
