// An open circuit holds instead of spinning, with real processes: a worker on the devbroker and
// Postgres whose receiver is down (connection refused on 127.0.0.1) for several cool-downs, then
// comes back. The deliveries wait in a retry tier until the circuit turns half-open, so the
// outage costs about one produce and one claim per event and cool-down, not one per first-tier
// delay; and each event is still delivered once.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "tests/support/worker_fixture.h"

namespace hookrelay::test {
namespace {

TEST_F(WorkerTest, OpenCircuitHoldsDeliveriesUntilTheHostComesBack) {
  constexpr int kEvents = 50;
  constexpr int kCooldownMs = 4000;
  constexpr auto kOutage = 16s;
  // A port with nothing listening: a receiver started there and stopped.
  uint16_t port = 0;
  {
    ScriptedReceiver gone;
    ASSERT_TRUE(gone.start());
    port = gone.port();
    gone.stop();
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/a";
  StackOptions o;
  o.routes = {{"acme", "a", url}};
  o.schedule_seconds = {1, 2, 5};  // the first tier is much shorter than the cool-down
  o.max_attempts = 10;             // the failed attempts and probes must not use them all up
  o.worker_extra =
      "  breaker_failure_threshold: 3\n  breaker_cooldown_ms: " + std::to_string(kCooldownMs) +
      "\n";
  ASSERT_NO_FATAL_FAILURE(create_stack(o));
  auto produced = stack_->produce_webhooks("acme", numbered_events("evt-down-", kEvents));
  ASSERT_TRUE(produced) << produced.error().message;

  const auto down_at = std::chrono::steady_clock::now();
  std::size_t w = start_worker();
  ASSERT_TRUE(eventually(
      [&] { return worker_metric(w, "hookrelay_worker_circuit_deferrals_total") > 0; }, 20s))
      << "the circuit never deferred a delivery";
  std::this_thread::sleep_until(down_at + kOutage);
  EXPECT_EQ(stack_->count_deliveries("succeeded"), 0);

  ScriptedReceiver back(port);  // the host comes back where it was
  ASSERT_TRUE(back.start());
  const auto back_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(deliveries_in_state("succeeded", kEvents, 30s))
      << "succeeded: " << stack_->count_deliveries("succeeded") << "\n"
      << stack_->describe_deliveries();
  const double recovery_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - back_at).count();
  std::this_thread::sleep_for(1s);  // a late duplicate would arrive by now

  expect_each_succeeded_once(*stack_, kEvents);
  EXPECT_EQ(back.count("/a"), static_cast<std::size_t>(kEvents))
      << "a delivery was made again after it succeeded";
  EXPECT_EQ(back.distinct_webhook_ids("/a"), static_cast<std::size_t>(kEvents));

  // Every retry-tier message is one produce; every consumed message one claim (one route).
  const std::string metrics = stack_->worker_metrics(w);
  const double produces = metric_sum(metrics, "hookrelay_worker_retries_total");
  const double claims = metric_sum(metrics, "hookrelay_worker_messages_consumed_total");
  const double deferrals = metric_sum(metrics, "hookrelay_worker_circuit_deferrals_total");
  const double outage_s = std::chrono::duration<double>(back_at - down_at).count();
  std::cout << "outage " << outage_s << " s, cool-down " << kCooldownMs << " ms, " << kEvents
            << " events: produces/event " << produces / kEvents << ", claims/event "
            << claims / kEvents << ", circuit deferrals/event " << deferrals / kEvents
            << ", all delivered " << recovery_s << " s after the host came back\n";
  // One deferral per event and cool-down, plus the failed first attempt's retry and a spare:
  // bouncing after the first tier's delay instead would cost about one per second of outage.
  const double cycles = outage_s * 1000 / kCooldownMs;
  EXPECT_GT(deferrals, 0);
  EXPECT_LE(produces / kEvents, cycles + 3);
  EXPECT_LE(claims / kEvents, cycles + 4);
  EXPECT_LT(recovery_s, kCooldownMs / 1000.0 + 6)
      << "deliveries waited long after the host came back";
}

}  // namespace
}  // namespace hookrelay::test
