#include "shared/replay/unknown_source_replay.h"

#include <map>
#include <string_view>
#include <utility>

#include "shared/kafka/wire_contract.h"
#include "shared/replay/dlq_replay.h"

namespace hookrelay {
namespace {

constexpr std::string_view kUnknownSourceReason = "unknown_source";

bool added_by_worker(std::string_view name) {
  return name == header::kDlqReason || name == header::kOriginTopic || name == header::kAttempt ||
         name == header::kFirstAttemptAt || name == header::kDueAt ||
         name == header::kDeliveryKey || name == header::kRoute ||
         name.substr(0, header::kLastPrefix.size()) == header::kLastPrefix;
}

}  // namespace

std::vector<MessageHeader> first_copy_headers(const std::vector<MessageHeader>& dead_letter) {
  std::vector<MessageHeader> out;
  out.reserve(dead_letter.size());
  for (const auto& h : dead_letter) {
    if (!added_by_worker(h.name)) out.push_back(h);
  }
  return out;
}

UnknownSourceSummary replay_unknown_sources(const std::vector<DlqMessage>& messages,
                                            const Config& config, MessageProducer& producer,
                                            MessageFetcher& fetcher,
                                            const UnknownSourceOptions& options) {
  UnknownSourceSummary summary;
  // Newest dead letter per event (source, event id), by its index in `messages`, events in order
  // of their first dead letter. A stub (read past the reader's memory budget) keeps its source
  // and event id, so it is selected and deduped as it is and fetched whole only when its event
  // is produced: memory and fetches follow --limit, not the size of the DLQ.
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::size_t> newest;
  std::vector<UnknownSourceItem> unreadable;
  // Fetched stubs that named no event (a reader that kept neither header): whole, by index.
  std::map<std::size_t, DlqMessage> fetched_whole;
  const auto fetch = [&fetcher](const DlqMessage& stub) {
    return fetcher.fetch(std::string(kDlqTopic), stub.partition, stub.offset);
  };
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const DlqMessage& read = messages[i];
    const std::string* reason = read.header(header::kDlqReason);
    if (!reason || *reason != kUnknownSourceReason) continue;
    const DlqMessage* m = &read;
    if (read.stub && (!read.header(header::kSource) || !read.header(header::kEventId))) {
      auto got = fetch(read);
      if (!got) {
        unreadable.push_back({"", "", read.partition, read.offset, "failed",
                              "its dead letter could not be read: " + got.error().message});
        continue;
      }
      m = &(fetched_whole[i] = std::move(*got));
    }
    const std::string* source = m->header(header::kSource);
    const std::string* event_id = m->header(header::kEventId);
    if (!options.source.empty() && (!source || *source != options.source)) {
      fetched_whole.erase(i);
      continue;
    }
    if (!source || !event_id || source->empty() || event_id->empty()) {
      unreadable.push_back({source ? *source : "", event_id ? *event_id : "", m->partition,
                            m->offset, "failed",
                            "its dead letter has no hr-source or hr-event-id"});
      fetched_whole.erase(i);
      continue;
    }
    auto id = std::make_pair(*source, *event_id);
    auto [it, added] = newest.try_emplace(id, i);
    if (added) {
      order.push_back(std::move(id));
    } else {
      fetched_whole.erase(it->second);
      it->second = i;
    }
  }

  for (auto& item : unreadable) {
    ++summary.total;
    ++summary.failed;
    summary.items.push_back(std::move(item));
  }
  // The limit counts the events the run would produce: those this config does not know either
  // are reported, not counted, so a block of them cannot hide the rest behind it.
  int counted = 0;
  for (const auto& id : order) {
    if (counted >= options.limit) {
      summary.limited = true;
      break;
    }
    if (options.stop_requested && options.stop_requested()) {
      summary.interrupted = true;
      break;
    }
    const std::size_t index = newest.at(id);
    const DlqMessage& letter = messages[index];
    UnknownSourceItem item{id.first, id.second, letter.partition, letter.offset, "", ""};
    ++summary.total;
    if (!config.sources.count(id.first)) {
      item.outcome = "skipped_unknown_source";
      item.detail = "source '" + id.first +
                    "' is not in this configuration's sources either: add it (and its routes) "
                    "to the workers' config first";
      ++summary.skipped;
      summary.items.push_back(std::move(item));
      continue;
    }
    ++counted;
    // This event's dead letter whole: as read, fetched above, or fetched now.
    DlqMessage whole;
    const DlqMessage* m = &letter;
    if (auto f = fetched_whole.find(index); f != fetched_whole.end()) {
      m = &f->second;
    } else if (letter.stub) {
      auto got = fetch(letter);
      if (!got) {
        item.outcome = "failed";
        item.detail = "its dead letter could not be read: " + got.error().message;
        ++summary.failed;
        summary.items.push_back(std::move(item));
        continue;
      }
      whole = std::move(*got);
      m = &whole;
    }
    const std::string* origin = m->header(header::kOriginTopic);
    if (origin && *origin != kWebhooksTopic) {
      item.outcome = "failed";
      item.detail = "its origin topic is " + *origin + ", not " + std::string(kWebhooksTopic);
      ++summary.failed;
    } else if (options.dry_run) {
      item.outcome = "would_replay";
      item.detail = "to " + std::string(kWebhooksTopic);
    } else {
      const auto headers = first_copy_headers(m->headers);
      auto produced = produce_acknowledged(
          producer, OutgoingMessage{kWebhooksTopic, id.second, m->value, &headers},
          options.ack_timeout_ms);
      if (produced) {
        item.outcome = "replayed";
        item.detail = "to " + std::string(kWebhooksTopic) + " partition " +
                      std::to_string(produced->partition) + " offset " +
                      std::to_string(produced->offset);
        ++summary.replayed;
      } else {
        item.outcome = "failed";
        item.detail = "not produced to " + std::string(kWebhooksTopic) + ": " +
                      produced.error().message +
                      " (run it again: a copy that did reach Kafka "
                      "is delivered once all the same)";
        ++summary.failed;
      }
    }
    summary.items.push_back(std::move(item));
  }
  return summary;
}

std::string unknown_source_progress_line(const UnknownSourceSummary& summary, bool dry_run) {
  int would = 0;
  for (const auto& i : summary.items) would += i.outcome == "would_replay" ? 1 : 0;
  return std::string(dry_run ? "would replay " : "replayed ") +
         std::to_string(dry_run ? would : summary.replayed) + "/" + std::to_string(summary.total) +
         " events of unknown sources, skipped " + std::to_string(summary.skipped) + ", failed " +
         std::to_string(summary.failed) +
         (summary.limited ? " (limit reached: the oldest events went; raise --limit, or run it "
                            "per --source, for the rest)"
                          : "") +
         (summary.interrupted ? " (interrupted)" : "");
}

}  // namespace hookrelay
