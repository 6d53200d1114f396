// hookrelay-admin against real Postgres, a real worker and the devbroker: every endpoint, bad
// input (always a 4xx with a JSON body naming the problem), replay of dead deliveries, resend of
// succeeded ones with the same webhook-id (a call's: the same Idempotency-Key), a retried POST
// /v1/replays with an Idempotency-Key that creates nothing more, and a replay that survives the
// admin process being killed without sending anything twice.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "admin/admin_request.h"
#include "admin/replay_jobs.h"
#include "shared/signing/crypto.h"
#include "tests/integration/scratch_database.h"
#include "tests/support/admin_fixture.h"
#include "tests/support/raw_client.h"

namespace hookrelay::test {
namespace {

TEST(AdminIdempotencyKey, IsOneTo255PrintableAsciiCharactersOrAbsent) {
  using admin::parse_idempotency_key;
  EXPECT_EQ(parse_idempotency_key(std::nullopt).value(), "");
  EXPECT_EQ(parse_idempotency_key("k").value(), "k");
  EXPECT_EQ(parse_idempotency_key("retry 7: ~!@#$%^&*()").value(), "retry 7: ~!@#$%^&*()");
  EXPECT_EQ(parse_idempotency_key(std::string(255, 'k')).value(), std::string(255, 'k'));
  for (const std::string& bad :
       {std::string(), std::string(256, 'k'), std::string("tab\there"), std::string("nul\0", 4),
        std::string("del\x7f"), std::string("\xc3\xa9t\xc3\xa9")}) {
    auto r = parse_idempotency_key(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, "bad_idempotency_key");
    EXPECT_NE(r.error().message.find("Idempotency-Key"), std::string::npos);
  }
}

// A date that does not exist is refused, not moved to the next day by timegm: 2025-02-29 was
// 2025-03-01, so a filter bounded by it selected a day more than asked.
TEST(AdminTimes, FebruaryTheTwentyNinthIsADateOnlyInALeapYear) {
  using admin::parse_rfc3339_ms;
  EXPECT_EQ(parse_rfc3339_ms("2024-02-29T00:00:00Z", "since").value(), 1709164800000);
  EXPECT_EQ(parse_rfc3339_ms("2000-02-29T12:00:00Z", "since").value(), 951825600000);
  EXPECT_EQ(parse_rfc3339_ms("2025-02-28T23:59:59.999Z", "since").value(), 1740787199999);
  for (const char* bad : {"2025-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "1970-02-29T10:00:00Z",
                          "2025-02-30T00:00:00Z", "2025-04-31T00:00:00Z"}) {
    auto r = parse_rfc3339_ms(bad, "until");
    ASSERT_FALSE(r) << bad << " -> " << r.value();
    EXPECT_EQ(r.error().code, "bad_parameter");
    EXPECT_EQ(r.error().message.rfind("until: ", 0), 0u) << r.error().message;
  }
}

// A time bound always bounds. A time before the epoch was taken as the epoch, and a bound at the
// epoch as none (0 is "no bound"): {"filter":{"state":"dead","until":"1970-01-01T00:00:00Z"}}
// replayed every dead delivery. Both are refused, naming the field; `since` at the epoch, which
// bounds nothing that exists, is taken.
TEST(AdminTimes, AnUntilAtOrBeforeTheEpochIsRefusedNotReadAsNoBound) {
  using admin::parse_delivery_query;
  using admin::parse_replay_request;
  auto before = admin::parse_rfc3339_ms("1970-01-01T00:30:00+01:00", "since");
  ASSERT_FALSE(before) << before.value();
  EXPECT_EQ(before.error().code, "bad_parameter");
  EXPECT_NE(before.error().message.find("since: is before 1970-01-01T00:00:00Z"), std::string::npos)
      << before.error().message;
  EXPECT_EQ(admin::parse_rfc3339_ms("1970-01-01T01:30:00+01:00", "since").value(), 1800000);

  for (const std::string until : {"1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00",
                                  "1970-01-01T00:00:00.000Z", "1970-01-01T00:30:00+01:00"}) {
    std::string query = "until=";
    for (const char c : until) query += c == '+' ? std::string("%2B") : std::string(1, c);
    auto q = parse_delivery_query(query);
    ASSERT_FALSE(q) << until;
    EXPECT_EQ(q.error().code, "bad_parameter");
    EXPECT_EQ(q.error().message.rfind("until: ", 0), 0u) << q.error().message;
    EXPECT_NE(q.error().message.find("1970-01-01T00:00:00Z"), std::string::npos);
    auto r = parse_replay_request(R"({"filter":{"state":"dead","until":")" + until + R"("}})");
    ASSERT_FALSE(r) << until;
    EXPECT_EQ(r.error().code, "bad_request");
    EXPECT_EQ(r.error().message.rfind("filter.until: ", 0), 0u) << r.error().message;
  }
  EXPECT_EQ(parse_delivery_query("until=1970-01-01T00:00:00.001Z").value().until_ms, 1);
  EXPECT_EQ(parse_delivery_query("since=1970-01-01T00:00:00Z").value().since_ms, 0);
  auto since =
      parse_replay_request(R"({"filter":{"state":"dead","since":"1970-01-01T00:00:00Z"}})");
  ASSERT_TRUE(since) << since.error().message;
  EXPECT_EQ(since->filter->since_ms, 0);
}

// A route's release takes the same minimum: at 0.001/s it held one of the runner's few places for
// days.
TEST(AdminReplayRequest, AResumeRateBelowTheMinimumIsRefusedNamingRate) {
  using admin::parse_route_control_query;
  for (const char* rate : {"0.001", "0.0999", "-1", "10000.5", "x"}) {
    auto r = parse_route_control_query(std::string("rate=") + rate, false);
    ASSERT_FALSE(r) << rate;
    EXPECT_EQ(r.error().code, "bad_parameter");
    EXPECT_EQ(r.error().message.rfind("rate: ", 0), 0u) << r.error().message;
    EXPECT_NE(r.error().message.find("0.1"), std::string::npos) << r.error().message;
  }
  for (const char* rate : {"0", "0.1", "2.5", "10000"}) {
    auto r = parse_route_control_query(std::string("rate=") + rate, false);
    ASSERT_TRUE(r) << rate << ": " << r.error().message;
    EXPECT_EQ(r->rate, std::stod(rate));
  }
}

// A replay paced slower than one key every 10 s is refused, naming rate and its minimum: any rate
// above 0 was taken (1e-9: a key a day, and the runner held by it). resend_succeeded is a
// boolean, for keys only, refused otherwise naming it.
TEST(AdminReplayRequest, ARateBelowTheMinimumAndAMisusedResendSucceededAreRefusedNamingTheField) {
  using admin::parse_replay_request;
  for (const char* rate : {"1e-9", "0.05", "0.0999", "-1", "10000.5"}) {
    auto r = parse_replay_request(std::string(R"({"keys":["k"],"rate":)") + rate + "}");
    ASSERT_FALSE(r) << rate;
    EXPECT_EQ(r.error().code, "bad_request");
    EXPECT_EQ(r.error().message.rfind("rate: ", 0), 0u) << r.error().message;
    EXPECT_NE(r.error().message.find("0.1"), std::string::npos) << r.error().message;
  }
  for (const char* rate : {"0", "0.1", "1", "10000"}) {
    auto r = parse_replay_request(std::string(R"({"keys":["k"],"rate":)") + rate + "}");
    ASSERT_TRUE(r) << rate << ": " << r.error().message;
    EXPECT_EQ(r->rate, std::stod(rate));
  }
  auto plain = parse_replay_request(R"({"keys":["k"]})");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_FALSE(plain->resend_succeeded);
  auto resend = parse_replay_request(R"({"keys":["k"],"resend_succeeded":true})");
  ASSERT_TRUE(resend) << resend.error().message;
  EXPECT_TRUE(resend->resend_succeeded);
  for (const char* bad :
       {R"({"keys":["k"],"resend_succeeded":"yes"})", R"({"keys":["k"],"resend_succeeded":1})",
        R"({"keys":["k"],"resend_succeeded":null})",
        R"({"filter":{"state":"succeeded"},"resend_succeeded":true})",
        R"({"filter":{"state":"dead"},"resend_succeeded":false})"}) {
    auto r = parse_replay_request(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, "bad_request");
    EXPECT_EQ(r.error().message.rfind("resend_succeeded: ", 0), 0u) << r.error().message;
  }
  auto unknown = parse_replay_request(R"({"keys":["k"],"resend":true})");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("resend_succeeded"), std::string::npos)
      << unknown.error().message;
}

// The runner reads a replay's unfinished items 200 at a time: each batch must read its own rows
// through replay_items_unfinished_idx (migrations/0022), already in order, however many items the
// replay finished. Through the table's key it read every item of the replay and sorted them: a
// release of a million parked deliveries read them 5,000 times.
class AdminReplayItemsTest : public hookrelay::testing::MigratedDatabaseTest {};

TEST_F(AdminReplayItemsTest, UnfinishedItemsAreReadThroughTheirIndexInOrderWithoutASort) {
  db_->scalar(
      "INSERT INTO replays (id, request, state) VALUES (1, '{}', 'running'),"
      " (2, '{}', 'running')");
  // Replay 1: 60,000 items, the first 55,000 finished; replay 2: 20,000 still to do.
  db_->scalar(
      "INSERT INTO replay_items (replay_id, delivery_key, position, status)"
      " SELECT 1, 'k' || g, g, CASE WHEN g <= 55000 THEN 'replayed' ELSE 'pending' END"
      " FROM generate_series(1, 60000) g");
  db_->scalar(
      "INSERT INTO replay_items (replay_id, delivery_key, position)"
      " SELECT 2, 'k' || g, g FROM generate_series(1, 20000) g");
  db_->scalar("ANALYZE replay_items");
  pqxx::connection c(db_->url());
  pqxx::nontransaction tx(c);
  tx.exec(std::string("PREPARE items(bigint, int) AS ") + admin::ReplayJobs::kUnfinishedItemsSql);
  std::string plan;
  for (const auto& row : tx.exec("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE items(1, 200)"))
    plan += row[0].as<std::string>() + "\n";
  EXPECT_NE(plan.find("replay_items_unfinished_idx"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("Sort"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("Seq Scan"), std::string::npos) << plan;
  // The batch is the first 200 unfinished items in their order.
  admin::ReplayJobs jobs(db_->url());
  auto items = jobs.unfinished_items(1, 200);
  ASSERT_TRUE(items) << items.error().message;
  ASSERT_EQ(items->size(), 200u);
  EXPECT_EQ(items->front().key, "k55001");
  EXPECT_EQ(items->back().key, "k55200");
}

class AdminApiTest : public AdminTest {
 protected:
  void SetUp() override {
    AdminTest::SetUp();
    StackOptions o;
    o.routes = {{"acme", "a", rx_.url("/a")}, {"acme", "b", rx_.url("/b")}};
    ASSERT_NO_FATAL_FAILURE(create_stack(o));
    ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  }
};

TEST_F(AdminApiTest, TokensAreRequiredAndTheContractIsServed) {
  expect_error(call("GET", "/v1/deliveries", {}, {}), 401, "unauthorized", "Authorization");
  expect_error(
      call("GET", "/v1/deliveries", {}, {{"Authorization", "Bearer wrong-token-wrong-token"}}), 401,
      "unauthorized", "not valid");
  // The ingest API token is not an admin token.
  expect_error(
      call("GET", "/v1/deliveries", {}, {{"Authorization", std::string("Bearer ") + kApiToken}}),
      401, "unauthorized", "not valid");
  auto doc = call("GET", "/openapi.yaml", {}, {});
  EXPECT_EQ(doc.status, 200);
  std::ifstream file(HOOKRELAY_SOURCE_DIR "/docs/openapi.yaml", std::ios::binary);
  std::string expected((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_EQ(doc.body, expected);
}

// A /v1 request without a valid token is refused from its header: the 401 arrives, as the
// handler's would (WWW-Authenticate, the JSON error naming the problem) and counted with its
// 401s, before any of a declared 10 MB body is sent, and the connection closes. So clients
// without a token cannot hold the request-body budget the others need. With the token the same
// header is taken, its body awaited and the request served.
TEST_F(AdminApiTest, AnUnauthenticatedRequestIsRefusedBeforeItsBodyIsSent) {
  const auto unauthorized_count = [&] {
    return metric_sum(call("GET", "/metrics", {}, {}).body, "hookrelay_admin_requests_total",
                      {"endpoint=\"unauthorized\"", "status=\"401\""});
  };
  const double before = unauthorized_count();
  const std::string head =
      "POST /v1/replays HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n";
  for (const auto& [authorization, names] : std::vector<std::pair<std::string, std::string>>{
           {"", "Authorization"},
           {"Authorization: Bearer wrong-token-wrong-token\r\n", "not valid"}}) {
    RawClient c(admin_port_);
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(head + authorization + "Content-Length: 10000000\r\n\r\n"));
    const std::string answer = c.read_until_close(5s, /*one_response=*/true);
    ASSERT_TRUE(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n")) << names << ": " << answer;
    EXPECT_NE(answer.find("\r\nWWW-Authenticate: Bearer\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find("\r\nConnection: close\r\n"), std::string::npos) << answer;
    const auto body = json::parse(answer.substr(answer.find("\r\n\r\n") + 4), nullptr, false);
    ASSERT_TRUE(body.is_object()) << answer;
    EXPECT_EQ(body["error"]["code"], "unauthorized") << answer;
    EXPECT_NE(body["error"]["message"].get<std::string>().find(names), std::string::npos) << answer;
    EXPECT_TRUE(c.read_until_close(5s).empty() && c.closed()) << names;
  }
  EXPECT_EQ(unauthorized_count(), before + 2);

  const std::string replay = R"({"keys":["wh:acme:nope:a"],"dry_run":true})";
  RawClient c(admin_port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(head + "Authorization: Bearer " + kAdminToken +
                     "\r\nContent-Length: " + std::to_string(replay.size()) + "\r\n\r\n"));
  EXPECT_FALSE(c.readable(300ms)) << "answered before its body: " << c.read_until_close(1s);
  ASSERT_TRUE(c.send(replay));
  const std::string answer = c.read_until_close(10s, /*one_response=*/true);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 202 Accepted\r\n")) << answer;
  EXPECT_EQ(unauthorized_count(), before + 2);
}

TEST_F(AdminApiTest, ListsPagesFiltersAndShowsDeliveriesEventsAndCalls) {
  start_worker();
  ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-", 7)));
  ASSERT_TRUE(deliveries_in_state("succeeded", 14, 30s)) << stack_->describe_deliveries();

  // Pages of 3 over the 7 deliveries of route a: 3 + 3 + 1, no key twice, newest first.
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  for (;;) {
    auto page =
        get_json("/v1/deliveries?route=a&limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ++pages;
    for (const auto& d : page["deliveries"]) {
      EXPECT_EQ(d["route"], "a");
      EXPECT_TRUE(seen.insert(d["key"].get<std::string>()).second) << d["key"];
    }
    if (page["next_cursor"].is_null()) break;
    cursor = page["next_cursor"].get<std::string>();
    ASSERT_LT(pages, 5);
  }
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(get_json("/v1/deliveries?state=succeeded&source=acme&limit=500")["deliveries"].size(),
            14u);
  EXPECT_EQ(get_json("/v1/deliveries?state=dead")["deliveries"].size(), 0u);
  EXPECT_EQ(get_json("/v1/deliveries?event_id=evt-3")["deliveries"].size(), 2u);
  EXPECT_EQ(get_json("/v1/deliveries?since=2999-01-01T00:00:00Z")["deliveries"].size(), 0u);
  EXPECT_EQ(get_json("/v1/deliveries?until=2999-01-01T00:00:00.5%2B01:00")["deliveries"].size(),
            14u);

  auto detail = get_json("/v1/deliveries/wh%3Aacme%3Aevt-3%3Ab");
  EXPECT_EQ(detail["delivery"]["state"], "succeeded");
  EXPECT_EQ(detail["delivery"]["last_status"], 200);
  ASSERT_EQ(detail["attempts"].size(), 1u);
  EXPECT_EQ(detail["attempts"][0]["outcome"], "succeeded");
  expect_error(call("GET", "/v1/deliveries/wh:acme:nope:a"), 404, "not_found", "wh:acme:nope:a");

  auto event = get_json("/v1/events/acme/evt-3");
  EXPECT_EQ(event["deliveries"].size(), 2u);
  EXPECT_EQ(event["inbound"]["topic"], "hookrelay.webhooks");
  expect_error(call("GET", "/v1/events/acme/nope"), 404, "not_found", "acme/nope");

  ASSERT_TRUE(stack_->start_ingest());
  auto posted = stack_->post_call(R"({"url":")" + rx_.url("/call") +
                                  R"(","method":"POST","body":"{}","idempotency_key":"call-1"})");
  ASSERT_TRUE(posted);
  ASSERT_EQ(posted->status, 202) << posted->body;
  const std::string id = json::parse(posted->body)["id"];
  ASSERT_TRUE(rx_.wait_for_count("/call", 1, 30s));
  json c;
  ASSERT_TRUE(eventually(
      [&] {
        c = get_json("/v1/calls/" + id, -1);
        return c.contains("delivery") && c["delivery"]["state"] == "succeeded";
      },
      20s))
      << c.dump();
  EXPECT_EQ(c["id"], id);
  EXPECT_EQ(c["delivery"]["kind"], "call");
  EXPECT_TRUE(c["delivery"]["route"].is_null());
  EXPECT_EQ(c["attempts"].size(), 1u);
  expect_error(call("GET", "/v1/calls/no-such-call"), 404, "not_found", "no-such-call");
}

TEST_F(AdminApiTest, BadInputIsA4xxNamingTheProblem) {
  expect_error(call("GET", "/v1/deliveries?cursor=bm90LWEtY3Vyc29y"), 400, "bad_cursor", "cursor");
  expect_error(call("GET", "/v1/deliveries?cursor=%%%"), 400, "bad_parameter", "cursor");
  expect_error(call("GET", "/v1/deliveries?colour=red"), 400, "unknown_parameter", "colour");
  expect_error(call("GET", "/v1/deliveries?limit=501"), 400, "bad_parameter", "limit");
  expect_error(call("GET", "/v1/deliveries?limit=0"), 400, "bad_parameter", "limit");
  expect_error(call("GET", "/v1/deliveries?state=gone"), 400, "bad_parameter", "state");
  expect_error(call("GET", "/v1/deliveries?since=yesterday"), 400, "bad_parameter", "since");
  expect_error(call("GET", "/v1/deliveries?limit=1&limit=2"), 400, "bad_parameter", "limit");
  expect_error(call("GET", "/v1/replays/abc"), 400, "bad_parameter", "id");
  expect_error(call("GET", "/v1/replays/007"), 400, "bad_parameter", "id");
  expect_error(call("GET", "/v1/replays/999999"), 404, "not_found", "999999");
  expect_error(call("DELETE", "/v1/deliveries"), 405, "method_not_allowed", "GET");
  expect_error(call("GET", "/v1/nothing"), 404, "not_found", "openapi");

  const Headers json_headers = auth_json();
  expect_error(call("POST", "/v1/replays", "{\"keys\": [", json_headers), 400, "bad_json", "JSON");
  expect_error(call("POST", "/v1/replays", R"({"keys":["k"]})",
                    {{"Authorization", std::string("Bearer ") + kAdminToken},
                     {"Content-Type", "text/plain"}}),
               415, "unsupported_media_type", "application/json");
  expect_error(
      call("POST", "/v1/replays", R"({"keys":["k"],"filter":{"state":"dead"}})", json_headers), 400,
      "bad_request", "exactly one");
  expect_error(call("POST", "/v1/replays", R"({"filter":{"state":"alive"}})", json_headers), 400,
               "bad_request", "filter.state");
  expect_error(
      call("POST", "/v1/replays", R"({"filter":{"state":"dead","colour":1}})", json_headers), 400,
      "bad_request", "filter.colour");
  expect_error(call("POST", "/v1/replays", R"({"keys":["k"],"rate":-1})", json_headers), 400,
               "bad_request", "rate");
  expect_error(call("POST", "/v1/replays", R"({"keys":["k"],"rate":1e-9})", json_headers), 400,
               "bad_request", "rate: must be 0 (unpaced) or from 0.1");
  expect_error(
      call("POST", "/v1/replays", R"({"keys":["k"],"resend_succeeded":"yes"})", json_headers), 400,
      "bad_request", "resend_succeeded");
  expect_error(call("POST", "/v1/replays", R"({"keys":[]})", json_headers), 400, "bad_request",
               "keys");
  expect_error(call("POST", "/v1/replays", R"([1,2])", json_headers), 400, "bad_request", "object");
  // Not JSON: the reason and where, never the text read. The parser's own message quoted the
  // whole unterminated string, here 4 MiB, in the answer (and the service parsed it again for
  // the metric).
  const std::string unterminated = R"({"keys":[")" + std::string(std::size_t{4} << 20, 'x');
  auto not_json = call("POST", "/v1/replays", unterminated, json_headers);
  expect_error(not_json, 400, "bad_json",
               "body is not valid JSON: invalid string: missing closing quote at byte " +
                   std::to_string(unterminated.size() + 1));
  EXPECT_LT(not_json.body.size(), 300u);
  expect_error(call("POST", "/v1/replays", R"({"keys": ["k"]]})", json_headers), 400, "bad_json",
               "at byte 15");

  // Refused by the HTTP server before the API sees it (past the 16 MiB body limit): answered
  // and counted like the rest.
  expect_error(call("POST", "/v1/replays", std::string((16u << 20) + 1, ' '), json_headers), 413,
               "body_too_large", "");
  const std::string metrics = call("GET", "/metrics", {}, {}).body;
  EXPECT_EQ(metric_sum(metrics, "hookrelay_admin_errors_total", {"code=\"body_too_large\""}), 1);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_admin_requests_total", {"status=\"413\""}), 1);
}

// Bytes PostgreSQL does not take as text (invalid UTF-8 such as %FF, a NUL), and a cursor
// whose time no timestamp holds, are refused before any statement with a 400 naming the
// parameter, counted like every other 400; they used to reach the database and answer 500 with
// its message.
TEST_F(AdminApiTest, BytesPostgresCannotStoreAreA400NamingTheParameter) {
  const auto errors = [&](const std::string& code) {
    return metric_sum(call("GET", "/metrics", {}, {}).body, "hookrelay_admin_errors_total",
                      {"code=\"" + code + "\""});
  };
  const double bad_parameter_before = errors("bad_parameter");
  const double bad_cursor_before = errors("bad_cursor");
  const double bad_request_before = errors("bad_request");

  expect_error(call("GET", "/v1/deliveries/%FF"), 400, "bad_parameter", "key");
  expect_error(call("GET", "/v1/deliveries/wh%3Aacme%3Ae%00%3Aa"), 400, "bad_parameter", "key");
  expect_error(call("GET", "/v1/events/%FF/x"), 400, "bad_parameter", "source");
  expect_error(call("GET", "/v1/events/acme/%C0%AF"), 400, "bad_parameter", "event_id");
  expect_error(call("GET", "/v1/calls/%FF"), 400, "bad_parameter", "id");
  expect_error(call("GET", "/v1/deliveries?source=%FF"), 400, "bad_parameter", "source");
  expect_error(call("GET", "/v1/deliveries?route=a%00"), 400, "bad_parameter", "route");
  expect_error(call("GET", "/v1/deliveries?event_id=%ED%A0%80"), 400, "bad_parameter", "event_id");
  expect_error(call("POST", "/v1/routes/a/suspend?reason=%FF"), 400, "bad_parameter", "reason");
  expect_error(call("POST", "/v1/routes/a/suspend?source=%FF"), 400, "bad_parameter", "source");
  expect_error(call("POST", "/v1/routes/%FF/resume"), 400, "bad_parameter", "name");
  constexpr int kBadParameters = 11;
  // Cursors of "1|<us>|<key>": a key of invalid UTF-8 or with a NUL, a time past 9999.
  expect_error(call("GET", "/v1/deliveries?cursor=MXwxNzAwMDAwMDAwMDAwMDAwfP8"), 400, "bad_cursor",
               "cursor");
  expect_error(call("GET", "/v1/deliveries?cursor=MXwxNzAwMDAwMDAwMDAwMDAwfGEAYg"), 400,
               "bad_cursor", "cursor");
  expect_error(call("GET", "/v1/deliveries?cursor=MXw5MjIzMzcyMDM2ODU0Nzc1ODA3fGs"), 400,
               "bad_cursor", "cursor");
  constexpr int kBadCursors = 3;
  // The last instant of 9999 is a cursor still: an empty page past it.
  EXPECT_EQ(get_json("/v1/deliveries?cursor=MXwyNTM0MDIzMDA3OTk5OTk5OTl8aw")["deliveries"].size(),
            0u);
  // jsonb (the stored request) refuses \u0000; nothing else in the body holds a NUL either.
  const Headers json_headers = auth_json();
  expect_error(call("POST", "/v1/replays", R"({"keys":["k"],"reason":"a\u0000b"})", json_headers),
               400, "bad_request", "reason");
  expect_error(call("POST", "/v1/replays", R"({"keys":["k","k\u0000"]})", json_headers), 400,
               "bad_request", "keys[1]");
  expect_error(
      call("POST", "/v1/replays", R"({"filter":{"state":"dead","route":"a\u0000"}})", json_headers),
      400, "bad_request", "filter.route");
  constexpr int kBadRequests = 3;

  EXPECT_EQ(errors("bad_parameter") - bad_parameter_before, kBadParameters);
  EXPECT_EQ(errors("bad_cursor") - bad_cursor_before, kBadCursors);
  EXPECT_EQ(errors("bad_request") - bad_request_before, kBadRequests);
  EXPECT_EQ(errors("internal"), 0);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), "0");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM route_states WHERE state = 'suspended'"), "0");
}

// A database that answers but refuses the admin's statements (here the deliveries view is gone,
// as before a migration) is a 503 that says so, not a 500, and the admin recovers with it.
TEST_F(AdminApiTest, ADatabaseRefusingItsStatementsIsA503NamingTheCause) {
  stack_->scalar("ALTER VIEW deliveries RENAME TO deliveries_away");
  auto refused = http_request("GET", url("/v1/deliveries"), {}, auth());
  stack_->scalar("ALTER VIEW deliveries_away RENAME TO deliveries");
  ASSERT_TRUE(refused) << refused.error().message;
  expect_error(*refused, 503, "db_misconfigured", "schema");
  EXPECT_EQ(refused->headers["retry-after"], "30");
  EXPECT_EQ(call("GET", "/v1/deliveries").status, 200);
}

// A statement past admin.statement_timeout_ms (here one waiting on a lock another session holds,
// as a filter walking a large table would run long) is a 503 that says so, and the thread and
// its connection serve the next request.
TEST_F(AdminApiTest, AStatementPastTheTimeoutIsA503QueryTimeoutAndTheAdminGoesOn) {
  const std::string original = read_text_file(admin_config_);
  const auto admin_line = original.find("admin: {");
  ASSERT_NE(admin_line, std::string::npos);
  std::ofstream(admin_config_, std::ios::trunc)
      << original.substr(0, admin_line) << "admin: { tokens: [\"" << kAdminToken
      << "\"], threads: 1, statement_timeout_ms: 300 }\n";
  ASSERT_EQ(::kill(admin_->pid(), SIGTERM), 0);
  ASSERT_TRUE(admin_->wait_exit(10s).has_value());
  ASSERT_NO_FATAL_FAILURE(start_admin());
  EXPECT_EQ(call("GET", "/v1/deliveries").status, 200);

  pqxx::connection holder(stack_->database().url());
  pqxx::work lock(holder);
  lock.exec("LOCK TABLE delivery_rows IN ACCESS EXCLUSIVE MODE");
  const auto started = std::chrono::steady_clock::now();
  auto timed_out = http_request("GET", url("/v1/deliveries"), {}, auth());
  const auto waited = std::chrono::steady_clock::now() - started;
  lock.abort();
  ASSERT_TRUE(timed_out) << timed_out.error().message;
  expect_error(*timed_out, 503, "query_timeout", "admin.statement_timeout_ms");
  EXPECT_EQ(timed_out->headers["retry-after"], "5");
  EXPECT_LT(waited, 5s);
  EXPECT_EQ(call("GET", "/v1/deliveries").status, 200);
}

TEST_F(AdminApiTest, SighupRotatesTheTokensRefusesABadFileAndNamesWhatNeedsARestart) {
  const std::string original = read_text_file(admin_config_);
  const auto admin_line = original.find("admin: {");
  ASSERT_NE(admin_line, std::string::npos);
  const std::string rotated = "adm_rotated_0123456789";
  const std::string next =
      original.substr(0, admin_line) + "admin: { tokens: [\"" + rotated + "\"], threads: 3 }\n";
  const Headers rotated_auth = {{"Authorization", "Bearer " + rotated}};
  auto status = [&](const Headers& h) { return call("GET", "/v1/deliveries", {}, h).status; };
  auto log_count = [&](const std::string& what) {
    const std::string log = admin_->read_log();
    int n = 0;
    for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  };

  std::ofstream(admin_config_, std::ios::trunc) << next;
  ASSERT_EQ(::kill(admin_->pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return status(rotated_auth) == 200; }, 10s)) << admin_->log_tail();
  EXPECT_EQ(status(auth()), 401);  // the old token is gone
  EXPECT_EQ(log_count("restart_required_for=admin.threads"), 1) << admin_->log_tail();

  // Not YAML: refused and counted; the running config (the rotated token) stays.
  std::ofstream(admin_config_, std::ios::trunc) << next << "routes: {broken\n";
  ASSERT_EQ(::kill(admin_->pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return log_count("msg=config_reload_refused") == 1; }, 10s))
      << admin_->log_tail();
  EXPECT_EQ(status(rotated_auth), 200);
  EXPECT_EQ(status(auth()), 401);
  const std::string metrics = call("GET", "/metrics", {}, {}).body;
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"applied\""}), 1);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"invalid\""}), 1);
  EXPECT_TRUE(admin_->running());
}

// A SIGHUP that changes postgres.url is applied at the next restart only, by every connection:
// the requests' (pooled, opened on first use) used the reloaded URL while the replay runner kept
// the start-up one. A file without postgres.url is refused, and the running config stays.
TEST_F(AdminApiTest, SighupKeepsTheStartUpDatabaseAndRefusesAFileWithoutOne) {
  const std::string original = read_text_file(admin_config_);
  const auto url_at = original.find("postgres: { url:");
  ASSERT_NE(url_at, std::string::npos) << original;
  const auto url_end = original.find('\n', url_at);
  const auto with_url = [&](const std::string& url) {
    return original.substr(0, url_at) + "postgres: { url: \"" + url + "\" }" +
           original.substr(url_end);
  };
  auto log_count = [&](const std::string& what) {
    const std::string log = admin_->read_log();
    int n = 0;
    for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  };

  // No /v1 request yet: no connection is open, the first one is opened after the reload.
  std::ofstream(admin_config_, std::ios::trunc)
      << with_url("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2");
  ASSERT_EQ(::kill(admin_->pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return log_count("restart_required_for=postgres.url") == 1; }, 10s))
      << admin_->log_tail();
  EXPECT_EQ(call("GET", "/v1/deliveries").status, 200);
  auto replay = wait_replay(post_replay({{"keys", {"wh:acme:nope:a"}}, {"dry_run", true}})["id"]);
  EXPECT_EQ(replay["missing"], 1) << replay.dump();

  std::ofstream(admin_config_, std::ios::trunc) << with_url("");
  ASSERT_EQ(::kill(admin_->pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return log_count("msg=config_reload_refused") == 1; }, 10s))
      << admin_->log_tail();
  EXPECT_NE(admin_->read_log().find("postgres.url: is required"), std::string::npos)
      << admin_->log_tail();
  EXPECT_EQ(call("GET", "/v1/deliveries").status, 200);
  const std::string metrics = call("GET", "/metrics", {}, {}).body;
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"applied\""}), 1);
  EXPECT_EQ(metric_sum(metrics, "hookrelay_config_reloads_total", {"result=\"invalid\""}), 1);
}

// A database host that accepts connections and then says nothing (a listening socket nobody
// reads) holds the admin no longer than its client-side limits (with_service_limits: a connect
// gives up after 10 s): it starts, answers /healthz, and a request answers 503 db_unavailable.
// Without the limits the start-up schema check waited on it for ever.
TEST_F(AdminApiTest, ASilentDatabaseHostIsA503AfterTheConnectTimeoutNotAHang) {
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(silent, 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{silent};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(silent, 128), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string silent_url =
      "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/postgres";

  const uint16_t port = free_port();
  auto other = ChildProcess::spawn(
      {HOOKRELAY_BIN_DIR "/admin/hookrelay-admin", "--config", admin_config_.string()},
      {{"HOOKRELAY_ADMIN_LISTEN", "127.0.0.1:" + std::to_string(port)},
       {"HOOKRELAY_DATABASE_URL", silent_url}},
      stack_->dir().file("admin-silent-db.log"));
  ASSERT_TRUE(other) << other.error().message;
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(wait_for_status(base + "/healthz", 200, 30s)) << other->log_tail();
  const auto started = std::chrono::steady_clock::now();
  auto r = http_request("GET", base + "/v1/deliveries", {}, auth(), 40s);
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(r) << r.error().message << "\n" << other->log_tail();
  expect_error(*r, 503, "db_unavailable", "not reachable");
  EXPECT_LT(waited, 25s);
  EXPECT_TRUE(wait_for_status(base + "/healthz", 200, 5s));
}

// The Idempotency-Key identity and the audit trails name a token by a digest prefix, not by its
// place in admin.tokens: a reload that puts another token first leaves a retried POST the same
// request (200, its replay), where it was a 422 naming another admin token. The name shows no
// part of the token.
TEST_F(AdminApiTest, AReloadThatReordersTheTokensKeepsEachCallersIdempotencyKeys) {
  const std::string name = "admin-token-" + hex_encode(sha256(kAdminToken)).substr(0, 16);
  Headers with_key = auth_json();
  with_key.emplace_back("Idempotency-Key", "reorder-1");
  const std::string body = R"({"keys":["wh:acme:evt-0:a"],"dry_run":true})";
  auto first = call("POST", "/v1/replays", body, with_key);
  ASSERT_EQ(first.status, 202) << first.body;
  const json created = json::parse(first.body);
  const std::string id = created["id"];
  EXPECT_EQ(created["requested_by"], name);
  auto suspended = call("POST", "/v1/routes/a/suspend?source=acme");
  ASSERT_EQ(suspended.status, 200) << suspended.body;
  EXPECT_EQ(json::parse(suspended.body)["route"]["suspended_by"], "operator:" + name);

  const std::string other = "adm_other_0123456789abcdef";
  std::string config = read_text_file(admin_config_);
  const std::string tokens = "admin: { tokens: [\"";
  const auto at = config.find(tokens);
  ASSERT_NE(at, std::string::npos) << config;
  config.insert(at + tokens.size(), other + "\", \"");
  std::ofstream(admin_config_, std::ios::trunc) << config;
  ASSERT_EQ(::kill(admin_->pid(), SIGHUP), 0);
  const Headers other_auth = {{"Authorization", "Bearer " + other}};
  ASSERT_TRUE(
      eventually([&] { return call("GET", "/v1/deliveries", {}, other_auth).status == 200; }, 10s))
      << admin_->log_tail();

  auto retried = call("POST", "/v1/replays", body, with_key);
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(json::parse(retried.body)["id"], id);
  // The same value written otherwise is the same request (it was a 422).
  const std::string paced = R"({"keys":["wh:acme:evt-0:a"],"dry_run":true,"rate":1})";
  Headers paced_key = auth_json();
  paced_key.emplace_back("Idempotency-Key", "paced-1");
  ASSERT_EQ(call("POST", "/v1/replays", paced, paced_key).status, 202);
  auto same = call("POST", "/v1/replays",
                   R"({"keys":["wh:acme:evt-0:a"],"dry_run":true,"rate":1.0})", paced_key);
  EXPECT_EQ(same.status, 200) << same.body;
  Headers other_key = other_auth;
  other_key.emplace_back("Content-Type", "application/json");
  other_key.emplace_back("Idempotency-Key", "reorder-1");
  expect_error(call("POST", "/v1/replays", body, other_key), 422, "idempotency_key_reused",
               "by another admin token");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), "2");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays WHERE requested_by LIKE '%" +
                           std::string(kAdminToken).substr(0, 8) + "%'"),
            "0");
}

// A key of 500 two-byte characters makes the missing item's detail ("no delivery with key " and
// the key) 1021 bytes: it is cut to at most 1000 bytes at a character boundary. Cut at byte
// 1000, inside a character, PostgreSQL refused it (22021), the runner left the item pending and
// claimed the same replay again every second: that replay and every later one never finished.
TEST_F(AdminApiTest, AnItemDetailCutAtACharacterBoundaryIsStoredAndLaterReplaysRun) {
  std::string key;
  for (int i = 0; i < 500; ++i) key += "\xc3\xa9";
  const std::string first = post_replay({{"keys", {key}}})["id"];
  const std::string later = post_replay({{"keys", {"wh:acme:nope:a"}}, {"dry_run", true}})["id"];
  auto done = wait_replay(first, 30s);
  EXPECT_EQ(done["state"], "finished") << done.dump();
  EXPECT_EQ(done["missing"], 1) << done.dump();
  std::string expected = "no delivery with key ";
  for (int i = 0; i < 489; ++i) expected += "\xc3\xa9";  // 21 + 978 bytes
  const std::string detail =
      stack_->scalar("SELECT detail FROM replay_items WHERE replay_id = " + first);
  EXPECT_TRUE(detail == expected) << detail.size() << " bytes: " << detail.substr(0, 40);
  EXPECT_EQ(wait_replay(later, 30s)["state"], "finished");
}

// An item outcome the database refuses (here a trigger refuses, 22021, a detail, and every
// outcome of another key) no longer stops the replays: a refused detail is replaced by a fixed
// one, and a replay whose outcome cannot be stored at all is left for a back-off (its lease
// given back) while the later replays run; it finishes once the database takes it.
TEST_F(AdminApiTest, AReplayWhoseItemCannotBeStoredIsRetriedLaterWhileLaterReplaysRun) {
  pqxx::connection db(stack_->database().url());
  pqxx::nontransaction(db).exec(R"SQL(
CREATE FUNCTION test_refuse_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.delivery_key = 'wh:acme:poison:a'
     OR (NEW.delivery_key = 'wh:acme:refused:a' AND NEW.detail LIKE 'no delivery%') THEN
    RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22021';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_item BEFORE UPDATE ON replay_items
  FOR EACH ROW EXECUTE FUNCTION test_refuse_item();
)SQL");
  const std::string poisoned = post_replay({{"keys", {"wh:acme:poison:a"}}})["id"];
  const std::string refused = post_replay({{"keys", {"wh:acme:refused:a"}}})["id"];
  const std::string later = post_replay({{"keys", {"wh:acme:nope:a"}}, {"dry_run", true}})["id"];

  auto refused_done = wait_replay(refused, 30s);
  EXPECT_EQ(refused_done["state"], "finished") << refused_done.dump();
  EXPECT_EQ(refused_done["missing"], 1) << refused_done.dump();
  EXPECT_EQ(stack_->scalar("SELECT detail FROM replay_items WHERE replay_id = " + refused),
            "(the outcome's detail was not stored: the database refused it; see the admin log)");
  EXPECT_EQ(wait_replay(later, 30s)["state"], "finished");
  auto stuck = get_json("/v1/replays/" + poisoned);
  EXPECT_EQ(stuck["state"], "running") << stuck.dump();
  EXPECT_EQ(stuck["pending"], 1) << stuck.dump();
  EXPECT_NE(admin_->read_log().find("msg=replay_backoff id=" + poisoned), std::string::npos)
      << admin_->log_tail();
  // Counted, not only logged: each run that left the replay for a back-off.
  const std::string metrics = call("GET", "/metrics", {}, {}).body;
  EXPECT_GE(metric_sum(metrics, "hookrelay_admin_replay_run_failures_total",
                       {"reason=\"item_not_saved\""}),
            1)
      << metrics;
  // Every reason is exported from the start, so a rate over it needs no first failure.
  EXPECT_NE(metrics.find("hookrelay_admin_replay_run_failures_total{reason=\"kafka_unavailable\"}"),
            std::string::npos)
      << metrics;

  pqxx::nontransaction(db).exec("DROP TRIGGER test_refuse_item ON replay_items");
  auto poisoned_done = wait_replay(poisoned, 90s);
  EXPECT_EQ(poisoned_done["state"], "finished") << poisoned_done.dump();
  EXPECT_EQ(poisoned_done["missing"], 1) << poisoned_done.dump();
  EXPECT_EQ(stack_->scalar("SELECT detail FROM replay_items WHERE replay_id = " + poisoned),
            "no delivery with key wh:acme:poison:a");
}

// Kafka goes down in the middle of a replay: the key whose produce fails is left for a later run
// (its item marked, its delivery not set back to dead), and once Kafka is back the replay
// finishes with every key produced and delivered once. The key was recorded failed, and the
// replay finished without it.
TEST_F(AdminApiTest, AKafkaOutageMidReplayLeavesTheKeyForALaterRunAndEachIsDeliveredOnce) {
  ASSERT_NO_FATAL_FAILURE(die_on_a(3, 30s));
  rx_.set_default("/a", {200});
  // Paced 2 s apart, so the brokers go down between the first key and the second.
  const std::string id =
      post_replay({{"filter", {{"state", "dead"}, {"route", "a"}}}, {"rate", 0.5}})["id"];
  json p;
  ASSERT_TRUE(eventually(
      [&] {
        p = get_json("/v1/replays/" + id);
        return p.value("produced", 0) >= 1;
      },
      30s))
      << p.dump();
  ASSERT_TRUE(stack_->broker().all_down());
  // The produce fails after kafka.produce_timeout_ms (5 s).
  const bool left = eventually(
      [&] {
        return admin_->read_log().find("msg=replay_item_retry_later id=" + id) != std::string::npos;
      },
      30s);
  p = get_json("/v1/replays/" + id);
  ASSERT_TRUE(stack_->broker().all_up());
  ASSERT_TRUE(left) << p.dump() << admin_->log_tail();
  EXPECT_NE(admin_->read_log().find("left marked, produced again when the replay resumes"),
            std::string::npos)
      << admin_->log_tail();
  EXPECT_EQ(p["state"], "running") << p.dump();
  EXPECT_EQ(p["failed"], 0) << p.dump();

  auto done = wait_replay(id, 120s);
  EXPECT_EQ(done["state"], "finished") << done.dump() << admin_->log_tail();
  EXPECT_EQ(done["matched"], 3) << done.dump();
  EXPECT_EQ(done["produced"], 3) << done.dump();
  EXPECT_EQ(done["failed"], 0) << done.dump();
  ASSERT_TRUE(rx_.wait_for_count("/a", 6, 60s)) << stack_->describe_deliveries();
  ASSERT_TRUE(deliveries_in_state("succeeded", 6, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(rx_.count("/a"), 6u);  // each dead delivery once more, not twice
  EXPECT_GE(
      metric_sum(call("GET", "/metrics", {}, {}).body, "hookrelay_admin_replay_run_failures_total",
                 {"reason=\"item_retry_later\""}),
      1);
}

// The replay is committed and reading it back fails (a column renamed under it, as a database
// refusing hookrelay's statements would): the answer is 202 with the replay as stored, not a 503
// that has a client without an Idempotency-Key post it again and create a second replay. A
// trigger holds the storing transaction open until the rename waits on it, so the rename is
// granted at its commit, before the read back.
TEST_F(AdminApiTest, AReplayWhoseReadBackFailsAfterItsCommitIsA202WithItsId) {
  pqxx::connection db(stack_->database().url());
  pqxx::nontransaction(db).exec(R"SQL(
CREATE FUNCTION test_slow_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(3);
  RETURN NULL;
END $$;
CREATE TRIGGER test_slow_items AFTER INSERT ON replay_items
  FOR EACH STATEMENT EXECUTE FUNCTION test_slow_items();
)SQL");
  std::optional<Result<HttpReply>> reply;
  std::thread poster([&] {
    reply = http_request("POST", url("/v1/replays"), R"({"keys":["wh:acme:nope:a"]})", auth_json(),
                         30s);
  });
  // The items of keys listed by hand are inserted in a WITH that counts them.
  const bool sleeping = eventually(
      [&] {
        return stack_->scalar(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                   " AND query LIKE '%INSERT INTO replay_items%'") == "1";
      },
      10s);
  if (sleeping) {
    pqxx::connection renamer(stack_->database().url());
    pqxx::work rename(renamer);
    // Waits for the replay's transaction, then holds the table until the read back waits too.
    rename.exec("ALTER TABLE replays RENAME COLUMN finished_at TO test_finished_at");
    std::this_thread::sleep_for(300ms);
    rename.commit();
  }
  poster.join();
  pqxx::nontransaction(db).exec(
      "ALTER TABLE replays RENAME COLUMN test_finished_at TO finished_at;"
      "DROP TRIGGER test_slow_items ON replay_items");
  ASSERT_TRUE(sleeping);
  ASSERT_TRUE(reply && *reply) << (reply ? reply->error().message : "no reply");
  const HttpReply& r = **reply;
  ASSERT_EQ(r.status, 202) << r.body;
  const json body = json::parse(r.body, nullptr, false);
  const std::string id = body.value("id", "");
  ASSERT_FALSE(id.empty()) << r.body;
  EXPECT_EQ(r.headers.at("location"), "/v1/replays/" + id);
  EXPECT_EQ(body["state"], "running") << r.body;
  EXPECT_EQ(body["matched"], 1) << r.body;
  EXPECT_EQ(body["pending"], 1) << r.body;
  EXPECT_EQ(body["requested_by"].get<std::string>().rfind("admin-token-", 0), 0u) << r.body;
  EXPECT_NE(admin_->read_log().find("msg=replay_read_back_failed id=" + id), std::string::npos)
      << admin_->log_tail();
  EXPECT_EQ(wait_replay(id, 60s)["missing"], 1);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), "1");
}

TEST_F(AdminApiTest, DeadDeliveriesReplayOnceAndSucceededOnesAreResentWithTheSameWebhookId) {
  ASSERT_NO_FATAL_FAILURE(die_on_a(3, 30s));
  rx_.set_default("/a", {200});

  // Dry run: counts, produces nothing.
  auto dry = post_replay({{"filter", {{"state", "dead"}, {"route", "a"}}}, {"dry_run", true}});
  auto dry_done = wait_replay(dry["id"]);
  EXPECT_EQ(dry_done["matched"], 3);
  EXPECT_EQ(dry_done["would_produce"], 3);
  EXPECT_EQ(dry_done["produced"], 0);
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(rx_.count("/a"), 3u);

  auto replay =
      post_replay({{"filter", {{"state", "dead"}, {"route", "a"}}}, {"reason", "receiver fixed"}});
  auto done = wait_replay(replay["id"]);
  EXPECT_EQ(done["matched"], 3);
  EXPECT_EQ(done["produced"], 3) << done.dump();
  ASSERT_TRUE(rx_.wait_for_count("/a", 6, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 6, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(rx_.count("/a"), 6u);  // each dead delivery once more, not twice
  auto detail = get_json("/v1/deliveries/wh%3Aacme%3Aevt-0%3Aa");
  EXPECT_EQ(detail["replays"].size(), 1u);

  // Resend of a succeeded delivery of route b: the receiver gets it again with its webhook-id.
  const auto before = rx_.webhook_id_counts("/b");
  ASSERT_EQ(before.size(), 3u);
  auto resend = post_replay({{"keys", {"wh:acme:evt-1:b"}}, {"resend_succeeded", true}});
  auto resent = wait_replay(resend["id"]);
  EXPECT_EQ(resent["produced"], 1) << resent.dump();
  ASSERT_TRUE(rx_.wait_for_count("/b", 4, 30s));
  std::this_thread::sleep_for(2s);
  const auto after = rx_.webhook_id_counts("/b");
  EXPECT_EQ(rx_.count("/b"), 4u);
  int twice = 0;
  for (const auto& [id, n] : after) {
    if (n == 2) ++twice;
    EXPECT_EQ(before.count(id), 1u) << "a new webhook-id: " << id;
  }
  EXPECT_EQ(twice, 1);
  EXPECT_EQ(get_json("/v1/deliveries/wh%3Aacme%3Aevt-1%3Ab")["delivery"]["state"], "succeeded");
  EXPECT_EQ(attempt_outcomes("wh%3Aacme%3Aevt-1%3Ab"),
            (std::vector<std::string>{"succeeded", "resent", "succeeded"}));
  // The marker was consumed: another copy of the message would be skipped.
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM deliveries WHERE resend_id IS NOT NULL"), "0");
}

// The same replay by keys requested twice while its keys are dead (a client retrying its POST):
// the first replay delivers each key, and the second finds them succeeded and skips them; a key
// dead when it was asked for is never resent. Row locks on the first replay's other keys hold it
// at points the test chooses, so the second reaches the key after it was delivered.
TEST_F(AdminApiTest, AKeyDeadWhenItsReplayWasRequestedTwiceIsDeliveredOnce) {
  ASSERT_NO_FATAL_FAILURE(die_on_a(3, 30s));
  rx_.set_default("/a", {200});
  const std::string first_key = "wh:acme:evt-0:a", key = "wh:acme:evt-1:a",
                    last_key = "wh:acme:evt-2:a";
  auto hold = [&](const std::string& k) {
    auto c = std::make_unique<pqxx::connection>(stack_->database().url());
    auto tx = std::make_unique<pqxx::work>(*c);
    tx->exec_params("SELECT 1 FROM delivery_rows WHERE delivery_key = $1 FOR UPDATE", k);
    return std::make_pair(std::move(c), std::move(tx));
  };
  auto hold_first = hold(first_key);
  auto hold_last = hold(last_key);

  const json request = {{"keys", {first_key, key, last_key}}, {"reason", "receiver fixed"}};
  const std::string first = post_replay(request)["id"];
  const std::string second = post_replay(request)["id"];  // the client's retry: all still dead
  hold_first.second->abort();  // the first replay goes on, delivers `key`, waits at last_key
  ASSERT_TRUE(rx_.wait_for_count("/a", 5, 30s));
  ASSERT_TRUE(eventually(
      [&] {
        return stack_->scalar("SELECT state FROM deliveries WHERE delivery_key = '" + key + "'") ==
               "succeeded";
      },
      30s))
      << stack_->describe_deliveries();
  hold_last.second->abort();

  auto first_done = wait_replay(first);
  EXPECT_EQ(first_done["produced"], 3) << first_done.dump();
  auto second_done = wait_replay(second);
  EXPECT_EQ(second_done["state"], "finished") << second_done.dump();
  EXPECT_EQ(second_done["produced"], 0) << second_done.dump();
  EXPECT_EQ(second_done["skipped"], 3) << second_done.dump();
  EXPECT_EQ(stack_->scalar("SELECT status || ': ' || detail FROM replay_items WHERE replay_id = " +
                           second + " AND delivery_key = '" + key + "'"),
            "skipped: already succeeded");
  ASSERT_TRUE(deliveries_in_state("succeeded", 6, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  // Each webhook-id of route a: the refused attempt and one delivery, not a resend.
  const auto counts = rx_.webhook_id_counts("/a");
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [webhook_id, n] : counts) EXPECT_EQ(n, 2) << webhook_id;
  EXPECT_EQ(attempt_outcomes("wh%3Aacme%3Aevt-1%3Aa"),
            (std::vector<std::string>{"permanent", "replayed", "succeeded"}));
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM deliveries WHERE resend_id IS NOT NULL"), "0");
}

// A client POSTs {"keys":[k]} while k is dead (no Idempotency-Key), the replay delivers k, and the
// client, whose request had timed out, POSTs the same body again: k is succeeded now, and the
// second replay resent it, so the receiver got it twice. A key succeeded when its replay is
// requested is resent only with resend_succeeded; without it the item is stored skipped, saying
// why, and the replay has nothing to do. With it, the key is resent.
TEST_F(AdminApiTest, AKeyListedAgainAfterItsReplayDeliveredItIsResentOnlyWithResendSucceeded) {
  ASSERT_NO_FATAL_FAILURE(die_on_a(1, 30s));
  rx_.set_default("/a", {200});
  const std::string key = "wh:acme:evt-0:a";
  const json request = {{"keys", {key}}};
  auto first = wait_replay(post_replay(request)["id"]);
  EXPECT_EQ(first["produced"], 1) << first.dump();
  ASSERT_TRUE(rx_.wait_for_count("/a", 2, 30s));
  ASSERT_TRUE(eventually(
      [&] {
        return stack_->scalar("SELECT state FROM deliveries WHERE delivery_key = '" + key + "'") ==
               "succeeded";
      },
      30s))
      << stack_->describe_deliveries();

  const json again = post_replay(request);  // the client's retry, the same body, no key
  const std::string second = again["id"];
  auto second_done = wait_replay(second, 30s);
  EXPECT_EQ(second_done["state"], "finished") << second_done.dump();
  EXPECT_EQ(second_done["matched"], 1) << second_done.dump();
  EXPECT_EQ(second_done["produced"], 0) << second_done.dump();
  EXPECT_EQ(second_done["skipped"], 1) << second_done.dump();
  EXPECT_EQ(stack_->scalar("SELECT status || ': ' || detail || ' ' || resend FROM replay_items"
                           " WHERE replay_id = " +
                           second),
            "skipped: succeeded when the replay was requested: not resent (resend_succeeded was "
            "not set) false");
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(rx_.count("/a"), 2u);  // the refused attempt and one delivery
  EXPECT_EQ(attempt_outcomes("wh%3Aacme%3Aevt-0%3Aa"),
            (std::vector<std::string>{"permanent", "replayed", "succeeded"}));

  // An explicit resend.
  auto third = wait_replay(post_replay({{"keys", {key}}, {"resend_succeeded", true}})["id"]);
  EXPECT_EQ(third["produced"], 1) << third.dump();
  ASSERT_TRUE(rx_.wait_for_count("/a", 3, 30s));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(rx_.count("/a"), 3u);
  EXPECT_EQ(rx_.webhook_id_counts("/a").at("evt-0"), 3);
  EXPECT_EQ(
      attempt_outcomes("wh%3Aacme%3Aevt-0%3Aa"),
      (std::vector<std::string>{"permanent", "replayed", "succeeded", "resent", "succeeded"}));
}

// A replay paced at the slowest rate (a key every 10 s) and, after it, a route's release and
// another replay: both finish while the slow one still waits for its next key, which it produces
// in its time. The runner worked the oldest replay until it had no item left, so a slow replay
// (any rate above 0 was taken: 1e-9 held the runner for a day per key) held back every release
// and replay after it.
TEST_F(AdminApiTest, AReleaseAndAReplayRequestedDuringASlowReplayFinishBeforeIt) {
  rx_.set_default("/a", {400, {}, 0, "refused"});
  start_worker();
  ASSERT_EQ(call("POST", "/v1/routes/b/suspend?source=acme").status, 200);
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"b\""}) == 1; }, 10s));
  ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-", 3)));
  ASSERT_TRUE(deliveries_in_state("dead", 3, 30s)) << stack_->describe_deliveries();
  ASSERT_TRUE(deliveries_in_state("parked", 3, 30s)) << stack_->describe_deliveries();
  rx_.set_default("/a", {200});

  const std::string slow =
      post_replay({{"filter", {{"state", "dead"}, {"route", "a"}}}, {"rate", 0.1}})["id"];
  ASSERT_TRUE(eventually([&] { return get_json("/v1/replays/" + slow)["produced"] == 1; }, 20s));
  auto resumed = call("POST", "/v1/routes/b/resume?source=acme");
  ASSERT_EQ(resumed.status, 202) << resumed.body;
  const std::string release = json::parse(resumed.body)["release"]["id"];
  const std::string later = post_replay({{"keys", {"wh:acme:nope:a"}}, {"dry_run", true}})["id"];

  auto release_done = wait_replay(release, 6s);
  EXPECT_EQ(release_done["state"], "finished") << release_done.dump();
  EXPECT_EQ(release_done["produced"], 3) << release_done.dump();
  auto later_done = wait_replay(later, 3s);
  EXPECT_EQ(later_done["state"], "finished") << later_done.dump();
  EXPECT_EQ(later_done["missing"], 1) << later_done.dump();
  auto slow_now = get_json("/v1/replays/" + slow);
  EXPECT_EQ(slow_now["state"], "running") << slow_now.dump();
  EXPECT_EQ(slow_now["produced"], 1) << slow_now.dump();
  ASSERT_TRUE(rx_.wait_for_count("/b", 3, 30s));

  // The slow replay keeps its pace: its three keys 10 s apart, each delivered once.
  auto slow_done = wait_replay(slow, 40s);
  EXPECT_EQ(slow_done["state"], "finished") << slow_done.dump();
  EXPECT_EQ(slow_done["produced"], 3) << slow_done.dump();
  EXPECT_GE(std::stod(stack_->scalar(
                "SELECT extract(epoch FROM max(updated_at) - min(updated_at)) FROM replay_items"
                " WHERE replay_id = " +
                slow)),
            19.0);
  ASSERT_TRUE(deliveries_in_state("succeeded", 6, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  for (const auto& [webhook_id, n] : rx_.webhook_id_counts("/a")) EXPECT_EQ(n, 2) << webhook_id;
  for (const auto& [webhook_id, n] : rx_.webhook_id_counts("/b")) EXPECT_EQ(n, 1) << webhook_id;
}

// The replay an Idempotency-Key names is deleted between the key's conflict and the read of the
// stored key (a trigger holds the request there): the key is free again and the request takes it
// with a new replay. It was a 503 "the database is not reachable".
TEST_F(AdminApiTest, AnIdempotencyKeyWhoseReplayIsDeletedWhileItIsLookedUpMakesANewReplay) {
  Headers with_key = auth_json();
  with_key.emplace_back("Idempotency-Key", "deleted-under-it");
  const std::string body = R"({"keys":["wh:acme:nope:a"],"dry_run":true})";
  auto first = call("POST", "/v1/replays", body, with_key);
  ASSERT_EQ(first.status, 202) << first.body;
  const std::string first_id = json::parse(first.body)["id"];
  EXPECT_EQ(wait_replay(first_id, 30s)["state"], "finished");

  pqxx::connection db(stack_->database().url());
  pqxx::nontransaction(db).exec(R"SQL(
CREATE FUNCTION test_slow_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(2);
  RETURN NULL;
END $$;
CREATE TRIGGER test_slow_keys AFTER INSERT ON replay_idempotency_keys
  FOR EACH STATEMENT EXECUTE FUNCTION test_slow_keys();
)SQL");
  std::optional<Result<HttpReply>> reply;
  std::thread poster(
      [&] { reply = http_request("POST", url("/v1/replays"), body, with_key, 30s); });
  const bool sleeping = eventually(
      [&] {
        return stack_->scalar(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                   " AND query LIKE 'INSERT INTO replay_idempotency_keys%'") == "1";
      },
      10s);
  if (sleeping) pqxx::nontransaction(db).exec("DELETE FROM replays WHERE id = " + first_id);
  poster.join();
  pqxx::nontransaction(db).exec("DROP TRIGGER test_slow_keys ON replay_idempotency_keys");
  ASSERT_TRUE(sleeping);
  ASSERT_TRUE(reply && *reply) << (reply ? reply->error().message : "no reply");
  const HttpReply& r = **reply;
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];
  EXPECT_NE(id, first_id);
  EXPECT_EQ(stack_->scalar("SELECT replay_id FROM replay_idempotency_keys"
                           " WHERE idempotency_key = 'deleted-under-it'"),
            id);
  EXPECT_EQ(wait_replay(id, 30s)["missing"], 1);
}

// A client whose POST /v1/replays timed out retries it with the same Idempotency-Key: the retries
// answer with the replay the first one created (200, the same id and Location) and create
// nothing, so each succeeded delivery is resent once. The same key with another body is a 422
// that creates nothing either.
TEST_F(AdminApiTest, ARetriedReplayWithTheSameIdempotencyKeyResendsEachDeliveryOnce) {
  start_worker();
  ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-", 2)));
  ASSERT_TRUE(deliveries_in_state("succeeded", 4, 30s)) << stack_->describe_deliveries();
  const auto before = rx_.webhook_id_counts("/b");
  ASSERT_EQ(before.size(), 2u);
  Headers with_key = auth_json();
  with_key.emplace_back("Idempotency-Key", "resend-b-2026-11-28");

  const std::string body =
      R"({"keys":["wh:acme:evt-0:b","wh:acme:evt-1:b"],"resend_succeeded":true,)"
      R"("reason":"receiver lost them"})";
  auto first = call("POST", "/v1/replays", body, with_key);
  ASSERT_EQ(first.status, 202) << first.body;
  const std::string id = json::parse(first.body)["id"];
  EXPECT_EQ(first.headers["location"], "/v1/replays/" + id);
  EXPECT_EQ(first.headers.count("idempotent-replayed"), 0u);
  // The retry, while the replay may still run: the same members in another order and spacing.
  auto retry = call("POST", "/v1/replays",
                    R"({ "reason": "receiver lost them", "keys": ["wh:acme:evt-0:b", )"
                    R"("wh:acme:evt-1:b"], "resend_succeeded": true })",
                    with_key);
  ASSERT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(json::parse(retry.body)["id"], id);
  EXPECT_EQ(retry.headers["location"], "/v1/replays/" + id);
  EXPECT_EQ(retry.headers["idempotent-replayed"], "true");

  auto done = wait_replay(id);
  EXPECT_EQ(done["matched"], 2);
  EXPECT_EQ(done["produced"], 2) << done.dump();
  // A retry after the replay finished: its final progress, still nothing new.
  auto late = call("POST", "/v1/replays", body, with_key);
  ASSERT_EQ(late.status, 200) << late.body;
  EXPECT_EQ(json::parse(late.body)["id"], id);
  EXPECT_EQ(json::parse(late.body)["state"], "finished");
  EXPECT_EQ(json::parse(late.body)["produced"], 2);

  // The same key for another request: refused, naming the key and its replay.
  expect_error(call("POST", "/v1/replays", R"({"keys":["wh:acme:evt-0:a"]})", with_key), 422,
               "idempotency_key_reused", "'resend-b-2026-11-28' was used for replay " + id);
  expect_error(call("POST", "/v1/replays",
                    R"({"keys":["wh:acme:evt-0:b","wh:acme:evt-1:b"],"resend_succeeded":true,)"
                    R"("reason":"receiver lost them","dry_run":true})",
                    with_key),
               422, "idempotency_key_reused", "different request body");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), "1");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replay_idempotency_keys WHERE replay_id = " + id),
            "1");

  // Each delivery of route b: its first delivery and one resend, with the same webhook-id.
  ASSERT_TRUE(rx_.wait_for_count("/b", 4, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 4, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(rx_.count("/b"), 4u);
  const auto after = rx_.webhook_id_counts("/b");
  ASSERT_EQ(after.size(), 2u);
  for (const auto& [webhook_id, n] : after) EXPECT_EQ(n, 2) << webhook_id;
  EXPECT_EQ(rx_.count("/a"), 2u);
  for (const std::string key : {"wh%3Aacme%3Aevt-0%3Ab", "wh%3Aacme%3Aevt-1%3Ab"}) {
    EXPECT_EQ(attempt_outcomes(key), (std::vector<std::string>{"succeeded", "resent", "succeeded"}))
        << key;
  }

  const std::string metrics = call("GET", "/metrics", {}, {}).body;
  const auto outcome = [&](const std::string& o) {
    return metric_sum(metrics, "hookrelay_admin_replay_requests_total", {"outcome=\"" + o + "\""});
  };
  EXPECT_EQ(outcome("created"), 1);
  EXPECT_EQ(outcome("existing"), 2);
  EXPECT_EQ(outcome("key_reused"), 2);
  EXPECT_EQ(
      metric_sum(metrics, "hookrelay_admin_errors_total", {"code=\"idempotency_key_reused\""}), 2);
}

// Two POSTs with one Idempotency-Key at once: one creates the replay, the other waits for it on
// the key's unique index and answers with it. A lock on `replays` holds the first between storing
// its key and storing its replay until the second waits on the key too. Each HTTP thread has a
// listening socket of its own (SO_REUSEPORT) and the kernel picks one per connection, so both
// POSTs may reach one thread and run one after the other; the admin gets 8 threads, and an
// attempt that did not see both at once is made again with a new key (each must still end with
// one replay).
TEST_F(AdminApiTest, ConcurrentPostsWithOneIdempotencyKeyCreateOneReplay) {
  std::string config = read_text_file(admin_config_);
  const auto admin_line = config.find("admin: { tokens:");
  ASSERT_NE(admin_line, std::string::npos) << config;
  config.insert(admin_line + std::string("admin: {").size(), " threads: 8,");
  std::ofstream(admin_config_, std::ios::trunc) << config;
  admin_->kill();
  (void)admin_->wait_exit(5s);
  ASSERT_NO_FATAL_FAILURE(start_admin());

  const std::string body = R"({"keys":["wh:acme:evt-0:a","wh:acme:evt-1:a"],"dry_run":true})";
  pqxx::connection watcher(stack_->database().url());
  const auto waiting = [&] {
    pqxx::nontransaction q(watcher);
    return q
        .exec1(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND (query LIKE 'INSERT INTO replays %'"
            "   OR query LIKE 'INSERT INTO replay_idempotency_keys %')")[0]
        .as<int>();
  };
  bool both_waited = false;
  int attempts = 0;
  for (; attempts < 5 && !both_waited; ++attempts) {
    const std::string key = "one-replay-please-" + std::to_string(attempts);
    Headers with_key = auth_json();
    with_key.emplace_back("Idempotency-Key", key);
    pqxx::connection holder(stack_->database().url());
    pqxx::work hold(holder);
    hold.exec("LOCK TABLE replays IN SHARE MODE");
    std::vector<Result<HttpReply>> replies(2, fail("unset", ""));
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back(
          [&, i] { replies[i] = http_request("POST", url("/v1/replays"), body, with_key, 30s); });
    }
    both_waited = eventually([&] { return waiting() == 2; }, 5s);
    hold.abort();
    for (auto& t : threads) t.join();

    std::multiset<int> statuses;
    std::set<std::string> ids;
    for (const auto& r : replies) {
      ASSERT_TRUE(r) << r.error().message;
      statuses.insert(r->status);
      auto j = json::parse(r->body, nullptr, false);
      ASSERT_TRUE(j.contains("id")) << r->body;
      ids.insert(j["id"].get<std::string>());
    }
    EXPECT_EQ(statuses, (std::multiset<int>{200, 202})) << key;
    ASSERT_EQ(ids.size(), 1u) << key;
    EXPECT_EQ(stack_->scalar("SELECT replay_id FROM replay_idempotency_keys WHERE "
                             "idempotency_key = '" +
                             key + "'"),
              *ids.begin());
    auto done = wait_replay(*ids.begin());
    EXPECT_EQ(done["matched"], 2) << done.dump();
  }
  EXPECT_TRUE(both_waited) << "no attempt of " << attempts << " had both POSTs in Postgres at once";
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), std::to_string(attempts));
}

// Without an Idempotency-Key each POST is a replay of its own, as before; a key out of its syntax
// is a 400 that creates nothing; one key per request, and a new key is a new replay.
TEST_F(AdminApiTest, WithoutAnIdempotencyKeyEachPostIsAReplayAndABadKeyIsA400) {
  const std::string body = R"({"keys":["wh:acme:evt-0:a"],"dry_run":true})";
  auto a = call("POST", "/v1/replays", body, auth_json());
  auto b = call("POST", "/v1/replays", body, auth_json());
  ASSERT_EQ(a.status, 202) << a.body;
  ASSERT_EQ(b.status, 202) << b.body;
  EXPECT_NE(json::parse(a.body)["id"], json::parse(b.body)["id"]);
  EXPECT_EQ(a.headers.count("idempotent-replayed"), 0u);

  Headers long_key = auth_json();
  long_key.emplace_back("Idempotency-Key", std::string(256, 'k'));
  expect_error(call("POST", "/v1/replays", body, long_key), 400, "bad_idempotency_key",
               "Idempotency-Key");
  Headers utf8_key = auth_json();
  utf8_key.emplace_back("Idempotency-Key", "cl\xc3\xa9");
  expect_error(call("POST", "/v1/replays", body, utf8_key), 400, "bad_idempotency_key",
               "printable ASCII");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), "2");

  Headers key_1 = auth_json(), key_2 = auth_json();
  key_1.emplace_back("Idempotency-Key", "k1");
  key_2.emplace_back("Idempotency-Key", "k2");
  EXPECT_EQ(call("POST", "/v1/replays", body, key_1).status, 202);
  EXPECT_EQ(call("POST", "/v1/replays", body, key_2).status, 202);
  EXPECT_EQ(call("POST", "/v1/replays", body, key_1).status, 200);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replays"), "4");
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replay_idempotency_keys"), "2");
}

TEST_F(AdminApiTest, ASucceededCallIsResentOncePerReplayWithTheSameIdempotencyKey) {
  start_worker();
  ASSERT_TRUE(stack_->start_ingest());
  auto posted = stack_->post_call(
      R"({"url":")" + rx_.url("/call") +
      R"(","method":"PUT","headers":{"X-Order":"42"},"body":"{\"n\":1}","idempotency_key":"order-42"})");
  ASSERT_TRUE(posted);
  ASSERT_EQ(posted->status, 202) << posted->body;
  const std::string id = json::parse(posted->body)["id"];
  ASSERT_TRUE(rx_.wait_for_count("/call", 1, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 30s)) << stack_->describe_deliveries();

  // By key, then by filter (route `call`): each replay sends the same request once more.
  auto by_key =
      wait_replay(post_replay({{"keys", {"call:order-42"}}, {"resend_succeeded", true}})["id"]);
  EXPECT_EQ(by_key["produced"], 1) << by_key.dump();
  ASSERT_TRUE(rx_.wait_for_count("/call", 2, 30s));
  ASSERT_TRUE(eventually([&] { return attempt_outcomes("call%3Aorder-42").size() == 3; }, 20s));
  auto by_filter =
      wait_replay(post_replay({{"filter", {{"state", "succeeded"}, {"route", "call"}}}})["id"]);
  EXPECT_EQ(by_filter["matched"], 1);
  EXPECT_EQ(by_filter["produced"], 1) << by_filter.dump();
  ASSERT_TRUE(rx_.wait_for_count("/call", 3, 30s));
  std::this_thread::sleep_for(2s);
  const auto got = rx_.requests("/call");
  ASSERT_EQ(got.size(), 3u);  // once per replay, not more
  for (const auto& r : got) {
    EXPECT_EQ(r.method, "PUT");
    EXPECT_EQ(r.header("Idempotency-Key"), "order-42");
    EXPECT_EQ(r.header("X-Order"), "42");
    EXPECT_EQ(r.body, R"({"n":1})");
  }

  json c;
  ASSERT_TRUE(eventually(
      [&] {
        c = get_json("/v1/calls/" + id);
        return c["attempts"].size() == 5u && c["delivery"]["state"] == "succeeded";
      },
      20s))
      << c.dump();
  std::vector<std::string> outcomes;
  for (const auto& a : c["attempts"]) outcomes.push_back(a["outcome"]);
  EXPECT_EQ(outcomes,
            (std::vector<std::string>{"succeeded", "resent", "succeeded", "resent", "succeeded"}));
  EXPECT_EQ(c["attempts"][1]["worker_id"].get<std::string>().rfind("operator:", 0), 0u);
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM deliveries WHERE resend_id IS NOT NULL"), "0");
  // The call's audit row holds its place in Kafka only.
  EXPECT_EQ(stack_->scalar(
                "SELECT topic || ' ' || source || encode(body_sha256, 'hex') FROM inbound_events"
                " WHERE event_id = '" +
                id + "'"),
            "hookrelay.calls ");
}

TEST_F(AdminApiTest, AReplayInterruptedByKillingTheAdminFinishesAfterRestartWithoutSendingTwice) {
  rx_.set_default("/a", {400, {}, 0, "refused"});
  start_worker();
  constexpr int kEvents = 24;
  ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-", kEvents)));
  ASSERT_TRUE(deliveries_in_state("dead", kEvents, 60s)) << stack_->describe_deliveries();
  rx_.set_default("/a", {200});

  auto replay = post_replay({{"filter", {{"state", "dead"}}}, {"rate", 8}});
  const std::string id = replay["id"];
  ASSERT_TRUE(
      eventually([&] { return get_json("/v1/replays/" + id)["produced"].get<int>() >= 5; }, 30s));
  admin_->kill();
  (void)admin_->wait_exit(5s);
  const int produced_before = std::stoi(stack_->scalar(
      "SELECT count(*) FROM replay_items WHERE status IN ('replayed', 'marked') AND replay_id = " +
      id));
  EXPECT_LT(produced_before, kEvents);

  ASSERT_NO_FATAL_FAILURE(start_admin());
  auto done = wait_replay(id, 90s);  // after the dead runner's lease expires
  EXPECT_EQ(done["matched"], kEvents);
  EXPECT_EQ(done["produced"], kEvents) << done.dump();
  ASSERT_TRUE(deliveries_in_state("succeeded", 2 * kEvents, 60s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(3s);
  // Route a: one refused attempt and one delivery per event; route b: one each.
  for (const auto& [webhook_id, n] : rx_.webhook_id_counts("/a")) EXPECT_EQ(n, 2) << webhook_id;
  expect_each_succeeded_once(*stack_, 2 * kEvents);
}

// Two admin processes, and a paced resend whose keys are 10 s apart (the slowest rate taken),
// as long as the 10 s replay lease: without a renewal the lease has run out before the next key.
// The admin working the replay keeps it between keys (its heartbeat renews the lease), so the
// other never takes it over, and each key is resent once. Before the heartbeat
// the other admin took the replay over during the wait and resent the second key, and the first
// then woke and resent it again (the worker had already taken the first resend's marker): the
// receiver got that webhook-id three times.
TEST_F(AdminApiTest, APacedReplaySlowerThanItsLeaseIsWorkedByOneAdminAndResendsEachKeyOnce) {
  ASSERT_NO_FATAL_FAILURE(die_on_a(3, 30s));
  auto other = ChildProcess::spawn(
      {HOOKRELAY_BIN_DIR "/admin/hookrelay-admin", "--config", admin_config_.string()},
      {{"HOOKRELAY_ADMIN_LISTEN", "127.0.0.1:" + std::to_string(free_port())}},
      stack_->dir().file("admin-other.log"));
  ASSERT_TRUE(other) << other.error().message;

  const std::vector<std::string> keys = {"wh:acme:evt-0:b", "wh:acme:evt-1:b", "wh:acme:evt-2:b"};
  const std::string id =
      post_replay({{"keys", keys}, {"resend_succeeded", true}, {"rate", 0.1}})["id"];
  std::string runner;
  ASSERT_TRUE(eventually(
      [&] {
        runner = stack_->scalar("SELECT coalesce(runner, '') FROM replays WHERE id = " + id);
        return !runner.empty();
      },
      10s));
  auto done = wait_replay(id, 60s);
  EXPECT_EQ(done["state"], "finished") << done.dump();
  EXPECT_EQ(done["produced"], 3) << done.dump();
  EXPECT_EQ(stack_->scalar("SELECT runner FROM replays WHERE id = " + id), runner);
  ASSERT_TRUE(rx_.wait_for_count("/b", 6, 30s));
  std::this_thread::sleep_for(3s);
  const auto counts = rx_.webhook_id_counts("/b");
  EXPECT_EQ(counts.size(), 3u);
  for (const auto& [webhook_id, n] : counts) EXPECT_EQ(n, 2) << webhook_id;
  for (const std::string& key : keys) {
    std::string encoded = key;
    for (std::size_t at = 0; (at = encoded.find(':', at)) != std::string::npos;)
      encoded.replace(at, 1, "%3A");
    EXPECT_EQ(attempt_outcomes(encoded),
              (std::vector<std::string>{"succeeded", "resent", "succeeded"}))
        << key;
  }
}

// A replay by key issued the moment its delivery is recorded dead. The worker records the
// delivery dead before it produces the dead letter, and here its producer holds the letter back
// for 1.5 s (linger.ms), so the replay's first read of hookrelay.dlq cannot hold it: the key is
// found by the one re-read, not reported missing, and delivered once.
class AdminReplayRaceTest : public AdminTest {
 protected:
  void SetUp() override {
    AdminTest::SetUp();
    StackOptions admin;
    admin.routes = {{"acme", "a", rx_.url("/a")}};
    StackOptions worker = admin;
    worker.kafka_properties = {{"linger.ms", "1500"}};
    ASSERT_NO_FATAL_FAILURE(create_stack(worker));
    ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(admin));
  }
};

TEST_F(AdminReplayRaceTest, AKeyReplayedAsItIsDeadLetteredIsFoundByTheRereadAndDeliveredOnce) {
  rx_.set_default("/a", {400, {}, 0, "refused"});
  start_worker();
  const std::string key = "wh:acme:evt-0:a";
  ASSERT_TRUE(stack_->produce_webhooks("acme", numbered_events("evt-", 1)));
  ASSERT_TRUE(eventually(
      [&] { return stack_->scalar("SELECT count(*) FROM deliveries WHERE state = 'dead'") == "1"; },
      30s))
      << stack_->describe_deliveries();
  rx_.set_default("/a", {200});
  const std::string id = post_replay({{"keys", {key}}})["id"];
  auto done = wait_replay(id);
  EXPECT_EQ(done["produced"], 1) << done.dump();
  EXPECT_EQ(done["missing"], 0) << done.dump();
  // The race was run: the dead letter came from the second read.
  EXPECT_EQ(
      stack_->scalar("SELECT status || ': ' || detail FROM replay_items WHERE replay_id = " + id),
      "replayed: to hookrelay.retry.0 (its message found by the second read of "
      "hookrelay.dlq)");
  ASSERT_TRUE(rx_.wait_for_count("/a", 2, 30s));
  ASSERT_TRUE(deliveries_in_state("succeeded", 1, 30s)) << stack_->describe_deliveries();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(rx_.webhook_id_counts("/a").at("evt-0"), 2);  // the refused attempt and the replay
  EXPECT_EQ(attempt_outcomes("wh%3Aacme%3Aevt-0%3Aa"),
            (std::vector<std::string>{"permanent", "replayed", "succeeded"}));
}

// A route's `ordered` as reloaded decides how its release produces: here a SIGHUP made the route
// unordered while its deliveries were parked (their messages carry an ordering key), so the
// release produces each at once. The runner read the start-up config, and each released delivery
// waited behind its ordering key, as of a route still ordered.
class AdminApiOrderedRouteTest : public AdminTest {
 protected:
  static constexpr const char* kOrdering =
      "ordered: true, ordering_key: { json_pointer: /customer }";
  void SetUp() override {
    AdminTest::SetUp();
    StackOptions o;
    o.routes = {{"acme", "a", rx_.url("/a"), 5000, kOrdering}};
    ASSERT_NO_FATAL_FAILURE(create_stack(o));
    ASSERT_NO_FATAL_FAILURE(configure_and_start_admin(o));
  }
};

TEST_F(AdminApiOrderedRouteTest, AReleaseReadsWhetherItsRouteIsOrderedFromTheReloadedConfig) {
  start_worker();
  auto suspended = call("POST", "/v1/routes/a/suspend?source=acme");
  ASSERT_EQ(suspended.status, 200) << suspended.body;
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(0, "hookrelay_route_suspended", {"route=\"a\""}) == 1; }, 10s));
  for (int i = 0; i < 2; ++i) {
    ASSERT_NO_FATAL_FAILURE(produce("acme", "c1-" + std::to_string(i),
                                    R"({"customer":"c1","n":)" + std::to_string(i) + "}"));
  }
  ASSERT_TRUE(deliveries_in_state("parked", 2, 30s)) << stack_->describe_deliveries();

  std::string config = read_text_file(admin_config_);
  const std::string ordering = std::string(", ") + kOrdering;
  const auto at = config.find(ordering);
  ASSERT_NE(at, std::string::npos) << config;
  config.erase(at, ordering.size());
  std::ofstream(admin_config_, std::ios::trunc) << config;
  ASSERT_EQ(::kill(admin_->pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually(
      [&] { return admin_->read_log().find("msg=config_reloaded") != std::string::npos; }, 10s))
      << admin_->log_tail();

  auto resumed = call("POST", "/v1/routes/a/resume?source=acme");
  ASSERT_EQ(resumed.status, 202) << resumed.body;
  const std::string id = json::parse(resumed.body)["release"]["id"];
  auto done = wait_replay(id);
  EXPECT_EQ(done["produced"], 2) << done.dump();
  EXPECT_EQ(stack_->scalar("SELECT count(*) FROM replay_items WHERE replay_id = " + id +
                           " AND detail LIKE 'to hookrelay.retry.0%'"),
            "2")
      << stack_->scalar("SELECT string_agg(detail, ' | ') FROM replay_items WHERE replay_id = " +
                        id);
  ASSERT_TRUE(deliveries_in_state("succeeded", 2, 30s)) << stack_->describe_deliveries();
}

}  // namespace
}  // namespace hookrelay::test
