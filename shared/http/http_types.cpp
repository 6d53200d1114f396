#include "shared/http/http_types.h"

#include <nlohmann/json.hpp>

#include "shared/json_writer.h"

namespace hookrelay {

HttpResponse json_error(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  nlohmann::json j = {{"error", {{"code", code}, {"message", message}}}};
  r.body = json_text(j);
  return r;
}

}  // namespace hookrelay
