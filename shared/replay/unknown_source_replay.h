// Replay of webhooks a worker dead-lettered as `unknown_source`: first copies of a source its
// config did not know (ingest accepted them under a newer config: a rollout half done, a reload
// refused on the worker). Such a dead letter is the whole message, with no delivery key (no route
// was chosen for it), so `dlq replay KEY` cannot name it. Once the workers' config knows the
// source, `hookrelay dlq replay --unknown-sources` produces each one again to its origin topic,
// hookrelay.webhooks, as ingest first did: the workers expand it into the routes they have now.
//
// Safe to run again: a replayed first copy is claimed per route under the delivery's key, so a
// route that has already received the event skips it (claim: already succeeded), whichever run
// or copy came first. Each event is produced at most once per run (its newest dead letter).
//
// Thread-safety: one run on one thread; the producer's ack callback may run on its own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shared/config/config.h"
#include "shared/kafka/message_producer.h"
#include "shared/replay/dlq_reader.h"

namespace hookrelay {

struct UnknownSourceOptions {
  std::string source;  // only this source; empty: every source
  int limit = 1000;    // events at most, oldest dead letter first
  bool dry_run = false;
  int ack_timeout_ms = 35000;
  std::function<bool()> stop_requested;  // checked between events
};

struct UnknownSourceItem {
  std::string source;
  std::string event_id;
  int32_t partition = -1;  // of its dead letter in hookrelay.dlq
  int64_t offset = -1;
  // replayed | would_replay | skipped_unknown_source (this config does not know it either) |
  // failed
  std::string outcome;
  std::string detail;
};

struct UnknownSourceSummary {
  int total = 0;  // distinct events selected
  int replayed = 0;
  int skipped = 0;
  int failed = 0;
  bool interrupted = false;
  bool limited = false;  // more events matched than `limit`
  std::vector<UnknownSourceItem> items;
};

// The headers of the first copy again: the dead letter's, without those the worker added to it
// (hr-dlq-reason, hr-origin-topic, hr-attempt, hr-*-attempt-at, hr-last-*, hr-due-at,
// hr-delivery-key, hr-route).
std::vector<MessageHeader> first_copy_headers(const std::vector<MessageHeader>& dead_letter);

// `messages`: hookrelay.dlq as read. A stub is selected by the source and event id it keeps and
// fetched whole from `fetcher` only when its event is produced (or checked by a dry run). Only dead
// letters whose reason is unknown_source are taken. `config`: the configuration the workers now
// run; an event of a source it does not know either is skipped, not produced to be dead-lettered
// again.
UnknownSourceSummary replay_unknown_sources(const std::vector<DlqMessage>& messages,
                                            const Config& config, MessageProducer& producer,
                                            MessageFetcher& fetcher,
                                            const UnknownSourceOptions& options);

std::string unknown_source_progress_line(const UnknownSourceSummary& summary, bool dry_run);

}  // namespace hookrelay
