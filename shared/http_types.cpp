#include "shared/http_types.h"

#include <nlohmann/json.hpp>

namespace hookrelay {

HttpResponse json_error(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  nlohmann::json j = {{"error", {{"code", code}, {"message", message}}}};
  r.body = j.dump();
  return r;
}

}  // namespace hookrelay
