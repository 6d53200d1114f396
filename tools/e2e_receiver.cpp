// hookrelay-e2e-receiver: the destination of bench/e2e. It stamps every request with its arrival
// time and the delivery id it carries, answers 200, or a failure on a schedule, and hands the
// stamps to the benchmark on request.
//
//   hookrelay-e2e-receiver --listen 127.0.0.1:PORT --out FILE [--threads 1]
//                          [--fail-share F] [--fail-times N] [--fail-status 503]
//
// The id is the `webhook-id` header (hookrelay webhooks), else `Idempotency-Key` (hookrelay calls,
// the Node peer), else the path's last segment. Failures: the ids whose hash falls in the share F
// (0..1) are answered --fail-status on their first N requests and 200 after that, so every retry
// of a chosen id is exercised the same way (N = 0 or F = 0: always 200).
//
// GET /flush appends the stamps gathered since the last flush to FILE, one line per request:
// arrival (µs since the Unix epoch, CLOCK_REALTIME), the status answered, the id, the
// X-Hookrelay-Attempt header (or -); it answers {"requests":R,"ok":K} (totals so far). SIGTERM
// flushes and exits.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shared/config/config.h"
#include "shared/http/http_server.h"
#include "shared/service_startup.h"

using namespace hookrelay;

namespace {

struct Stamp {
  int64_t arrival_us;
  int status;
  std::string id;
  std::string attempt;
};

class Receiver {
 public:
  Receiver(std::string out, double fail_share, int fail_times, int fail_status)
      : out_(std::move(out)),
        fail_share_(fail_share),
        fail_times_(fail_times),
        fail_status_(fail_status) {}

  HttpResponse handle(const HttpRequest& req) {
    int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    if (req.method == "GET" && req.target == "/flush") return flush();
    std::string id;
    if (auto h = req.header("webhook-id")) {
      id = *h;
    } else if (auto k = req.header("idempotency-key")) {
      id = *k;
    } else {
      std::string_view t = req.target;
      id = t.substr(t.rfind('/') + 1);
    }
    std::string attempt = "-";
    if (auto a = req.header("x-hookrelay-attempt")) attempt = *a;
    bool chosen = fail_times_ > 0 && fail_share_ > 0 &&
                  static_cast<double>(std::hash<std::string>{}(id) % 1000000) < fail_share_ * 1e6;
    HttpResponse r;
    std::lock_guard<std::mutex> lock(mu_);
    int seen = chosen ? seen_[id]++ : 0;
    r.status = chosen && seen < fail_times_ ? fail_status_ : 200;
    r.body = r.status == 200 ? R"({"ok":true})" : R"({"error":{"code":"scheduled_failure"}})";
    ++requests_;
    if (r.status / 100 == 2) ++ok_;
    stamps_.push_back({now, r.status, std::move(id), std::move(attempt)});
    return r;
  }

  HttpResponse flush() {
    std::vector<Stamp> batch;
    int64_t requests = 0, ok = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(stamps_);
      requests = requests_;
      ok = ok_;
    }
    HttpResponse r;
    if (!batch.empty()) {
      std::FILE* f = std::fopen(out_.c_str(), "a");
      if (!f) return json_error(500, "write_failed", "cannot append to " + out_);
      for (const auto& s : batch) {
        std::fprintf(f, "%lld\t%d\t%s\t%s\n", static_cast<long long>(s.arrival_us), s.status,
                     s.id.c_str(), s.attempt.c_str());
      }
      std::fclose(f);
    }
    r.body = "{\"requests\":" + std::to_string(requests) + ",\"ok\":" + std::to_string(ok) + "}";
    return r;
  }

 private:
  const std::string out_;
  const double fail_share_;
  const int fail_times_;
  const int fail_status_;
  std::mutex mu_;
  std::unordered_map<std::string, int> seen_;
  std::vector<Stamp> stamps_;
  int64_t requests_ = 0;
  int64_t ok_ = 0;
};

}  // namespace

static int run(int argc, char** argv) {
  block_termination_signals();
  std::string listen = "127.0.0.1:9301";
  std::string out;
  int threads = 1;
  double fail_share = 0;
  int fail_times = 0;
  int fail_status = 503;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--listen" && has_value) {
      listen = argv[++i];
    } else if (a == "--out" && has_value) {
      out = argv[++i];
    } else if (a == "--threads" && has_value) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--fail-share" && has_value) {
      fail_share = std::atof(argv[++i]);
    } else if (a == "--fail-times" && has_value) {
      fail_times = std::atoi(argv[++i]);
    } else if (a == "--fail-status" && has_value) {
      fail_status = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: hookrelay-e2e-receiver --listen HOST:PORT --out FILE [--threads N] "
                   "[--fail-share F] "
                   "[--fail-times N] [--fail-status 503]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  auto hp = parse_host_port(listen, "--listen");
  if (!hp || out.empty() || threads < 1 || fail_share < 0 || fail_share > 1 || fail_times < 0 ||
      fail_status < 100 || fail_status > 599) {
    std::fprintf(stderr,
                 "hookrelay-e2e-receiver: needs --listen HOST:PORT and --out FILE; --threads >= 1, "
                 "--fail-share in "
                 "[0, 1], --fail-times >= 0, --fail-status 100..599\n");
    return 2;
  }
  Receiver receiver(out, fail_share, fail_times, fail_status);
  HttpServerOptions options;
  options.host = hp->host;
  options.port = hp->port;
  options.threads = threads;
  options.max_connections = 1000000;  // the worker may open many; a 503 here would count as a retry
  HttpServer server(options, [&receiver](const HttpRequest& req, const Responder& respond) {
    respond(receiver.handle(req));
  });
  if (auto s = server.start(); !s) {
    std::fprintf(stderr, "hookrelay-e2e-receiver: %s\n", s.error().message.c_str());
    return 1;
  }
  std::printf("e2e receiver listening on %s:%u\n", hp->host.c_str(), server.port());
  std::fflush(stdout);
  wait_for_termination_signal();
  server.stop();
  receiver.flush();
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}
