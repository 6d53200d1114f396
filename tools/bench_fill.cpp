// hookrelay-bench-fill: pre-fills a topic with webhook messages shaped exactly as ingest writes
// them (value = the raw 1 KiB JSON body; hr-kind, hr-source, hr-event-id, hr-received-at,
// hr-content-type headers; key = event id), as fast as the idempotent producer takes them, and
// waits for every acknowledgement. For bench/worker; never used by the services.
//
//   hookrelay-bench-fill --bootstrap HOSTS --count N [--topic hookrelay.webhooks]
//                        [--source github] [--value-bytes 1024] [--id-prefix PREFIX]
//
// Event ids are "<prefix>-<i>", so one prefix per run keeps delivery keys unique. Keyed messages
// spread evenly over partitions (null keys would be batched stickily onto a few). After the last
// ack it checks each partition's low watermark: the dev broker keeps only about 5 MB per
// partition, and a fill that silently lost its oldest messages would make the benchmark lie.
// Prints one line: "filled N messages in S s (R msg/s); partitions P; min/max per partition".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shared/clock.h"
#include "shared/kafka/kafka_handles.h"
#include "shared/kafka/kafka_producer.h"
#include "shared/kafka/wire_contract.h"
#include "shared/log.h"

using namespace hookrelay;

namespace {

struct FillOptions {
  std::string bootstrap;
  std::string topic = std::string(kWebhooksTopic);
  std::string source = "github";
  std::string id_prefix = "bench";
  long count = 0;
  long value_bytes = 1024;
};

constexpr const char* kUsage =
    "usage: hookrelay-bench-fill --bootstrap HOSTS --count N [--topic T] [--source S]\n"
    "                            [--value-bytes B] [--id-prefix P]\n";

bool parse(int argc, char** argv, FillOptions& o) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (a == "--bootstrap") {
      o.bootstrap = v;
    } else if (a == "--topic") {
      o.topic = v;
    } else if (a == "--source") {
      o.source = v;
    } else if (a == "--id-prefix") {
      o.id_prefix = v;
    } else if (a == "--count") {
      o.count = std::stol(v);
    } else if (a == "--value-bytes") {
      o.value_bytes = std::stol(v);
    } else {
      return false;
    }
  }
  return !o.bootstrap.empty() && o.count > 0 && o.value_bytes >= 32;
}

// A JSON object of exactly `bytes` bytes, padded inside a string field.
std::string json_body(long bytes) {
  std::string head = R"({"action":"opened","repository":{"full_name":"acme/widgets"},"pad":")";
  std::string tail = R"("})";
  long pad = std::max(0L, bytes - static_cast<long>(head.size() + tail.size()));
  return head + std::string(static_cast<std::size_t>(pad), 'x') + tail;
}

// Messages per partition that the broker still holds from offset 0; -1 when it lost some.
Result<std::vector<int64_t>> partition_counts(const std::string& bootstrap,
                                              const std::string& topic) {
  auto conf = make_kafka_conf({{"bootstrap.servers", bootstrap}});
  if (!conf) return Unexpected{conf.error()};
  char err[512];
  KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), err, sizeof err));
  if (!rk) return fail("kafka", err);
  (void)conf->release();
  const rd_kafka_metadata_t* raw_md = nullptr;
  auto md_err = rd_kafka_metadata(rk.get(), 1, nullptr, &raw_md, 10000);
  KafkaMetadata md(raw_md);
  if (md_err != RD_KAFKA_RESP_ERR_NO_ERROR || !md) return fail("kafka", "metadata request failed");
  std::vector<int64_t> counts;
  for (int t = 0; t < md->topic_cnt; ++t) {
    if (topic != md->topics[t].topic) continue;
    for (int p = 0; p < md->topics[t].partition_cnt; ++p) {
      int64_t low = 0;
      int64_t high = 0;
      rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), md->topics[t].partitions[p].id,
                                       &low, &high, 10000);
      counts.push_back(low == 0 ? high : -1);
    }
  }
  if (counts.empty()) return fail("kafka", "no such topic: " + topic);
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  FillOptions o;
  try {
    if (!parse(argc, argv, o)) {
      std::fputs(kUsage, stderr);
      return 2;
    }
  } catch (const std::exception&) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  init_logging("bench-fill", "warn");
  KafkaConfig kafka;
  kafka.bootstrap_servers = o.bootstrap;
  kafka.produce_timeout_ms = 60000;
  auto producer = KafkaProducer::create(kafka, "hookrelay-bench-fill");
  if (!producer) {
    std::fprintf(stderr, "hookrelay-bench-fill: %s\n", producer.error().message.c_str());
    return 1;
  }
  const std::string body = json_body(o.value_bytes);
  std::atomic<long> acked{0};
  std::atomic<long> failed{0};
  std::mutex first_error_mu;
  std::string first_error;
  constexpr int kMaxOutstanding = 100000;  // below queue.buffering.max.messages

  auto started = std::chrono::steady_clock::now();
  for (long i = 0; i < o.count; ++i) {
    while ((*producer)->outstanding() >= kMaxOutstanding)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::string id = o.id_prefix + "-" + std::to_string(i);
    std::vector<MessageHeader> headers = {
        {std::string(header::kKind), "webhook"},
        {std::string(header::kSource), o.source},
        {std::string(header::kEventId), id},
        {std::string(header::kReceivedAt), std::to_string(unix_now_ms())},
        {std::string(header::kContentType), "application/json"},
    };
    (*producer)->produce({o.topic, id, body, &headers}, [&](const Result<ProducedAt>& r) {
      if (r) {
        acked.fetch_add(1);
        return;
      }
      if (failed.fetch_add(1) == 0) {
        std::lock_guard<std::mutex> lock(first_error_mu);
        first_error = r.error().code + ": " + r.error().message;
      }
    });
  }
  int left = (*producer)->flush(120000);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (left > 0 || failed.load() > 0) {
    std::lock_guard<std::mutex> lock(first_error_mu);
    std::fprintf(stderr,
                 "hookrelay-bench-fill: %ld acked, %ld failed, %d unreported; first error: %s\n",
                 acked.load(), failed.load(), left, first_error.c_str());
    return 1;
  }
  auto counts = partition_counts(o.bootstrap, o.topic);
  if (!counts) {
    std::fprintf(stderr, "hookrelay-bench-fill: %s\n", counts.error().message.c_str());
    return 1;
  }
  if (std::find(counts->begin(), counts->end(), -1) != counts->end()) {
    std::fprintf(
        stderr,
        "hookrelay-bench-fill: the broker dropped old messages (about 5 MB kept per partition); "
        "use a smaller --count or a fresh broker\n");
    return 1;
  }
  auto [lo, hi] = std::minmax_element(counts->begin(), counts->end());
  std::printf(
      "filled %ld messages in %.2f s (%.0f msg/s); partitions %zu; min/max per partition "
      "%lld/%lld\n",
      acked.load(), seconds, static_cast<double>(acked.load()) / seconds, counts->size(),
      static_cast<long long>(*lo), static_cast<long long>(*hi));
  return 0;
}
