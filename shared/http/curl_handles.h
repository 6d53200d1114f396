// unique_ptr owners for libcurl's C handles, so none is freed by hand (librdkafka's are in
// kafka_handles.h, file descriptors in unique_fd.h).
//
// Thread-safety: value types; a handle is used by one thread at a time, as the libraries ask.
#pragma once

#include <curl/curl.h>

#include <memory>

namespace hookrelay {

// CURL and CURLM are both `void`, so each has a deleter type of its own.
struct CurlEasyDeleter {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct CurlMultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;
using CurlMulti = std::unique_ptr<CURLM, CurlMultiDeleter>;
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// Appends to an owned list (curl_slist_append returns the new head; nullptr on failure, when the
// list is left as it was).
inline bool curl_slist_add(CurlSlist& list, const char* line) {
  curl_slist* head = curl_slist_append(list.get(), line);
  if (!head) return false;
  (void)list.release();
  list.reset(head);
  return true;
}

}  // namespace hookrelay
