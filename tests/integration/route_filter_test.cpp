// Route filters, headers and secrets end to end: real hookrelay-ingest and hookrelay-worker
// processes, devbroker, Postgres and a scripted receiver. Three routes of one source, two with
// filters: each receives exactly the events its filter matches, with its own headers and, for the
// route with two secrets, two signatures that each verify.
#include <gtest/gtest.h>

#include <set>

#include "shared/signing/crypto.h"
#include "shared/signing/signature_verifier.h"
#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

constexpr const char* kOldRouteSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
constexpr const char* kRouteToken = "tok-e2e-route-secret-4f1c";

std::set<std::string> webhook_ids(const std::vector<ReceivedRequest>& requests) {
  std::set<std::string> ids;
  for (const auto& r : requests) ids.insert(r.header("webhook-id").value_or("?"));
  return ids;
}

bool verifies_with(const ReceivedRequest& r, const std::string& secret) {
  SourceConfig receiver;
  receiver.name = "receiver";
  receiver.scheme = SchemeKind::kStandardWebhooks;
  receiver.secrets = {secret};
  HeaderLookup lookup = r.lookup();
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return verify_webhook(receiver, lookup, r.body, now.count()).has_value();
}

TEST_F(WorkerTest, RoutesReceiveOnlyTheEventsTheirFiltersMatch) {
  StackOptions o;
  o.env = {{"ROUTE_TOKEN", kRouteToken}};
  o.routes = {
      {"github", "pushes", rx_.url("/pushes"), 5000,
       R"(filter: { header: { x-github-event: [push] } }, headers: { Authorization: "Bearer ${ROUTE_TOKEN}" })"},
      {"github", "api-prs", rx_.url("/api"), 5000,
       std::string(
           R"(filter: { header: { X-GitHub-Event: pull_request }, )"
           R"(body: [ { pointer: /repository/full_name, equals: acme/api }, )"
           R"({ pointer: /action, in: [opened, reopened] }, { pointer: /sender/type, exists: true } ] }, )"
           R"(headers: { X-Team: api }, secrets: [")") +
           kRouteSecret + "\", \"" + kOldRouteSecret + "\"]"},
      {"github", "all", rx_.url("/all")},
  };
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  ASSERT_TRUE(stack_->start_ingest());
  start_worker();

  struct Event {
    std::string id, kind, body;
  };
  const std::string sender = R"(,"sender":{"type":"User"}})";
  const std::vector<Event> events = {
      {"e-push-api", "push",
       R"({"repository":{"full_name":"acme/api"},"action":"opened")" + sender},
      {"e-pr-api-opened", "pull_request",
       R"({"repository":{"full_name":"acme/api"},"action":"opened")" + sender},
      {"e-pr-api-closed", "pull_request",
       R"({"repository":{"full_name":"acme/api"},"action":"closed")" + sender},
      {"e-pr-web", "pull_request",
       R"({"repository":{"full_name":"acme/web"},"action":"reopened")" + sender},
      {"e-pr-api-reopened", "pull_request",
       R"({"repository":{"full_name":"acme/api"},"action":"reopened")" + sender},
      {"e-pr-no-sender", "pull_request",
       R"({"repository":{"full_name":"acme/api"},"action":"opened"})"},
      {"e-pr-not-json", "pull_request", "action=opened&repository=acme/api"},
      {"e-push-xml", "push", "<push/>"},
  };
  for (const auto& e : events) {
    auto r = stack_->post_webhook("github", e.id, e.body, {{"X-GitHub-Event", e.kind}});
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->status, 202) << e.id << ": " << r->body;
  }

  ASSERT_TRUE(rx_.wait_for_count("/all", events.size(), 30s)) << "all got " << rx_.count("/all");
  ASSERT_TRUE(rx_.wait_for_count("/pushes", 2, 10s)) << "pushes got " << rx_.count("/pushes");
  ASSERT_TRUE(rx_.wait_for_count("/api", 2, 10s)) << "api got " << rx_.count("/api");
  ASSERT_TRUE(deliveries_in_state("succeeded", static_cast<int64_t>(events.size()) + 4, 10s))
      << stack_->describe_deliveries();
  std::this_thread::sleep_for(1s);  // a filtered-out delivery would show up here

  EXPECT_EQ(rx_.count("/all"), events.size());
  EXPECT_EQ(webhook_ids(rx_.requests("/pushes")),
            (std::set<std::string>{"e-push-api", "e-push-xml"}));
  EXPECT_EQ(webhook_ids(rx_.requests("/api")),
            (std::set<std::string>{"e-pr-api-opened", "e-pr-api-reopened"}));

  for (const auto& r : rx_.requests("/pushes")) {
    EXPECT_EQ(r.header("authorization"), std::string("Bearer ") + kRouteToken);
    EXPECT_TRUE(verifies_with(r, kRouteSecret)) << "the single secret key still signs";
  }
  for (const auto& r : rx_.requests("/api")) {
    EXPECT_EQ(r.header("x-team"), "api");
    EXPECT_FALSE(r.header("authorization")) << "headers are per route";
    const std::string signature = r.header("webhook-signature").value_or("");
    EXPECT_EQ(std::count(signature.begin(), signature.end(), ' '), 1)
        << "two signatures: " << signature;
    EXPECT_TRUE(verifies_with(r, kRouteSecret)) << "new secret";
    EXPECT_TRUE(verifies_with(r, kOldRouteSecret)) << "old secret";
  }
  for (const auto& r : rx_.requests("/all")) EXPECT_FALSE(r.header("x-team"));

  // Filtered-out events never became deliveries: no claim, no row.
  EXPECT_EQ(stack_->count_deliveries(), static_cast<int64_t>(events.size()) + 4);
  EXPECT_EQ(stack_->scalar(
                "SELECT count(*) FROM deliveries WHERE delivery_key LIKE 'wh:github:%:api-prs'"),
            "2");
  EXPECT_EQ(stack_->scalar(
                "SELECT count(*) FROM deliveries WHERE delivery_key LIKE 'wh:github:%:pushes'"),
            "2");

  const std::string metrics = stack_->worker_metrics(0);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_deliveries_filtered_total",
                       {"source=\"github\"", "route=\"pushes\""}),
            6);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_deliveries_filtered_total",
                       {"source=\"github\"", "route=\"api-prs\""}),
            6);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_deliveries_filtered_total", {"route=\"all\""}), 0);
  EXPECT_EQ(metrics.find(kRouteToken), std::string::npos) << "a header value in the metrics";
  EXPECT_EQ(stack_->worker(0).process.read_log().find(kRouteToken), std::string::npos)
      << "a header value in the log";
}

// An event that every route of its source filters out is still an accepted webhook: it gets its
// inbound audit row (where it lies in Kafka, its body hash) like one that is delivered, and no
// delivery. Events are produced straight to hookrelay.webhooks, as ingest writes them.
TEST_F(WorkerTest, AnEventEveryRouteFiltersOutIsStillAudited) {
  StackOptions o;
  o.routes = {
      {"github", "pushes", rx_.url("/pushes"), 5000,
       R"(filter: { body: [ { pointer: /kind, equals: push } ] })"},
      {"github", "tags", rx_.url("/tags"), 5000,
       R"(filter: { body: [ { pointer: /kind, equals: tag } ] })"},
  };
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  start_worker();
  const std::vector<std::pair<std::string, std::string>> events = {
      {"e-kept-1", R"({"kind":"push"})"},
      {"e-dropped-1", R"({"kind":"issue"})"},
      {"e-dropped-2", "not json"},
      {"e-kept-2", R"({"kind":"tag"})"},
  };
  for (const auto& [id, body] : events) ASSERT_NO_FATAL_FAILURE(produce("github", id, body));

  ASSERT_TRUE(rx_.wait_for_count("/pushes", 1, 30s));
  ASSERT_TRUE(rx_.wait_for_count("/tags", 1, 10s));
  ASSERT_TRUE(
      eventually([&] { return stack_->scalar("SELECT count(*) FROM inbound_events") == "4"; }, 10s))
      << stack_->scalar("SELECT string_agg(event_id, ',' ORDER BY event_id) FROM inbound_events");
  // Each row names the event's place in hookrelay.webhooks and the hash of its body.
  for (const auto& [id, body] : events) {
    EXPECT_EQ(stack_->scalar("SELECT topic || ' ' || encode(body_sha256, 'hex') FROM inbound_events"
                             " WHERE source = 'github' AND event_id = '" +
                             id + "'"),
              "hookrelay.webhooks " + hex_encode(sha256(body)))
        << id;
  }
  EXPECT_EQ(
      stack_->scalar("SELECT count(DISTINCT (\"partition\", \"offset\")) FROM inbound_events"),
      "4");
  EXPECT_EQ(stack_->count_deliveries(), 2);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM deliveries WHERE delivery_key LIKE '%dropped%'"),
            "0");
  EXPECT_EQ(worker_metric(0, "hookrelay_deliveries_filtered_total"), 6);
}

}  // namespace
}  // namespace hookrelay::test
