#include "cli/http_post.h"

#include <curl/curl.h>

#include <memory>

#include "shared/http/curl_handles.h"

namespace hookrelay::cli {
namespace {

size_t append(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

}  // namespace

Result<HttpReply> http_post(const std::string& url,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body, int timeout_ms) {
  CurlEasy curl(curl_easy_init());
  if (!curl) return fail("http", "cannot initialise libcurl");
  CurlSlist list;
  for (const auto& [name, value] : headers) {
    if (!curl_slist_add(list, (name + ": " + value).c_str()))
      return fail("http", "out of memory building headers");
  }
  HttpReply reply;
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply.body);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) return fail("http", "POST " + url + ": " + curl_easy_strerror(rc), true);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  reply.status = static_cast<int>(status);
  return reply;
}

}  // namespace hookrelay::cli
