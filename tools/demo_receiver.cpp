// hookrelay-demo-receiver: a receiver for trying hookrelay out. It checks the Standard Webhooks
// signature hookrelay puts on deliveries, prints one line per request, and answers 200 (or 401
// when the signature does not verify).
//
//   hookrelay-demo-receiver --listen 127.0.0.1:9000 [--secret whsec_...]
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include "shared/clock.h"
#include "shared/config/config.h"
#include "shared/http/http_server.h"
#include "shared/log.h"
#include "shared/service_startup.h"
#include "shared/signing/signature_verifier.h"

using namespace hookrelay;

static int run(int argc, char** argv) {
  block_termination_signals();
  std::string listen = "127.0.0.1:9000";
  std::string secret;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (a == "--secret" && i + 1 < argc) {
      secret = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: hookrelay-demo-receiver [--listen HOST:PORT] [--secret whsec_...]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  auto hp = parse_host_port(listen, "--listen");
  if (!hp) {
    std::fprintf(stderr, "hookrelay-demo-receiver: %s\n", hp.error().message.c_str());
    return 2;
  }
  SourceConfig scheme;
  scheme.name = "demo";
  scheme.scheme = SchemeKind::kStandardWebhooks;
  if (!secret.empty()) scheme.secrets = {secret};

  HttpServerOptions options;
  options.host = hp->host;
  options.port = hp->port;
  HttpServer server(options, [&](const HttpRequest& req, const Responder& respond) {
    int64_t now = unix_now_ms() / 1000;
    std::string verdict = "unsigned";
    HttpResponse r;
    r.body = R"({"received":true})";
    if (!scheme.secrets.empty()) {
      auto v = verify_webhook(scheme, req.header, req.body, now);
      verdict = v ? "signature=valid" : "signature=INVALID(" + v.error().code + ")";
      if (!v) r.status = 401;
    }
    auto id = req.header("webhook-id");
    if (!id) id = req.header("Idempotency-Key");
    std::string body(req.body.substr(0, 200));
    std::printf("%s %.*s id=%.*s %s bytes=%zu body=%s\n", std::string(req.method).c_str(),
                static_cast<int>(req.target.size()), req.target.data(),
                static_cast<int>(id ? id->size() : 1), id ? id->data() : "-", verdict.c_str(),
                req.body.size(), body.c_str());
    std::fflush(stdout);
    respond(std::move(r));
  });
  if (auto s = server.start(); !s) {
    std::fprintf(stderr, "hookrelay-demo-receiver: %s\n", s.error().message.c_str());
    return 1;
  }
  std::printf("demo receiver listening on %s:%u\n", hp->host.c_str(), server.port());
  std::fflush(stdout);
  wait_for_termination_signal();
  server.stop();
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
