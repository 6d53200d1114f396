#include "tests/support/http_client.h"

#include <curl/curl.h>

#include <memory>
#include <sstream>
#include <thread>

namespace hookrelay::test {
namespace {

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t append_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t append_header(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of("\r\n ") + 1);
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
  }
  return size * n;
}

bool loopback(const std::string& url) {
  for (const char* prefix : {"http://127.0.0.1:", "http://[::1]:", "http://localhost:"}) {
    if (url.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace

Result<HttpReply> http_request(const std::string& method, const std::string& url,
                               const std::string& body,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               std::chrono::milliseconds timeout) {
  if (!loopback(url)) return fail("http_client", "refusing a non-loopback URL: " + url);
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  (void)initialised;
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  if (!easy) return fail("http_client", "curl_easy_init failed");
  CURL* e = easy.get();
  HttpReply reply;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &append_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &append_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &reply.headers);
  if (method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  std::unique_ptr<curl_slist, SlistDeleter> list(curl_slist_append(nullptr, "Expect:"));
  for (const auto& [k, v] : headers)
    list.reset(curl_slist_append(list.release(), (k + ": " + v).c_str()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list.get());
  CURLcode code = curl_easy_perform(e);
  if (code != CURLE_OK) {
    return fail("http_client", method + " " + url + ": " + curl_easy_strerror(code), true);
  }
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  reply.status = static_cast<int>(status);
  return reply;
}

bool wait_for_status(const std::string& url, int status, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto r = http_get(url, std::chrono::seconds(2));
    if (r && r->status == status) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

double metric_sum(const std::string& exposition, const std::string& name,
                  const std::vector<std::string>& labels) {
  double sum = 0;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
    char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;  // a longer metric name with this prefix
    auto value_at = line.rfind(' ');
    if (value_at == std::string::npos) continue;
    std::string_view label_part(line.data(), value_at);
    bool match = true;
    for (const auto& l : labels) match &= label_part.find(l) != std::string_view::npos;
    if (!match) continue;
    try {
      sum += std::stod(line.substr(value_at + 1));
    } catch (const std::exception&) {
      // NaN/garbage: not a sample this helper can add up
    }
  }
  return sum;
}

}  // namespace hookrelay::test
