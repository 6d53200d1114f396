// A webhook message as ingest writes it to hookrelay.webhooks, for the route tests.
#pragma once

#include <memory>
#include <string>

#include "shared/kafka/wire_contract.h"
#include "worker/message_expander.h"

namespace hookrelay::testing {

// Event "e1" of source "gh" with an X-GitHub-Event header of `event`.
inline ConsumedMessage github_webhook(const std::string& event, const std::string& body) {
  ConsumedMessage m;
  m.topic = std::string(kWebhooksTopic);
  m.value = std::make_shared<const std::string>(body);
  m.headers = {{"hr-kind", "webhook"},
               {"hr-source", "gh"},
               {"hr-event-id", "e1"},
               {"hr-received-at", "1000"},
               {"hr-fwd-x-github-event", event}};
  return m;
}

}  // namespace hookrelay::testing
