#include "tests/support/scripted_receiver.h"

#include <algorithm>
#include <cctype>

namespace hookrelay::test {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<std::string> ReceivedRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return std::nullopt;
}

HeaderLookup ReceivedRequest::lookup() const {
  return [this](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& [k, v] : headers) {
      if (iequals(k, name)) return std::string_view(v);
    }
    return std::nullopt;
  };
}

ScriptedReceiver::ScriptedReceiver(uint16_t port, const std::string& host) {
  HttpServerOptions options;
  options.host = host;
  options.port = port;
  options.threads = 2;
  options.max_body_bytes = 8 << 20;
  server_ =
      std::make_unique<HttpServer>(options, [this](const HttpRequest& request, Responder respond) {
        handle(request, std::move(respond));
      });
}

ScriptedReceiver::~ScriptedReceiver() { stop(); }

Result<void> ScriptedReceiver::start() {
  if (auto r = server_->start(); !r) return r;
  timer_thread_ = std::thread([this] { run_timers(); });
  return {};
}

void ScriptedReceiver::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  timer_cv_.notify_all();
  if (timer_thread_.joinable()) timer_thread_.join();
  server_->stop();
}

uint16_t ScriptedReceiver::port() const { return server_->port(); }

std::string ScriptedReceiver::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

void ScriptedReceiver::script(const std::string& path, std::vector<ScriptedResponse> responses) {
  std::lock_guard lock(mu_);
  auto& queue = scripts_[path];
  for (auto& r : responses) queue.push_back(std::move(r));
}

void ScriptedReceiver::set_default(const std::string& path, ScriptedResponse response) {
  std::lock_guard lock(mu_);
  defaults_[path] = std::move(response);
}

void ScriptedReceiver::set_default(ScriptedResponse response) {
  std::lock_guard lock(mu_);
  default_ = std::move(response);
}

void ScriptedReceiver::handle(const HttpRequest& request, Responder respond) {
  ReceivedRequest rec;
  rec.method = std::string(request.method);
  rec.target = std::string(request.target);
  rec.path = rec.target.substr(0, rec.target.find('?'));
  rec.body = std::string(request.body);
  request.for_each_header([&rec](std::string_view k, std::string_view v) {
    rec.headers.emplace_back(std::string(k), std::string(v));
  });
  rec.at = std::chrono::steady_clock::now();
  rec.unix_ms = unix_ms_now();

  ScriptedResponse script;
  bool counted = false;
  bool refused = false;
  {
    std::lock_guard lock(mu_);
    auto queue = scripts_.find(rec.path);
    auto limit = limits_.find(rec.path);
    if (limit != limits_.end() && limit->second.in_flight >= limit->second.max) {
      script = limit->second.over;
      limit->second.refused.push_back(rec.at);
      refused = true;
    } else if (queue != scripts_.end() && !queue->second.empty()) {
      script = std::move(queue->second.front());
      queue->second.pop_front();
    } else if (auto d = defaults_.find(rec.path); d != defaults_.end()) {
      script = d->second;
    } else {
      script = default_;
    }
    if (limit != limits_.end() && !refused) {
      counted = true;
      auto& l = limit->second;
      l.peak = std::max(l.peak, ++l.in_flight);
    }
    received_.push_back(rec);
  }
  changed_.notify_all();

  HttpResponse response;
  response.status = script.status;
  response.body = script.body;
  response.content_type = "text/plain";
  response.headers = script.headers;
  if (script.delay_ms <= 0) {
    respond(std::move(response));
    if (counted) leave(rec.path);
    answered(rec.path);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      timers_.emplace(rec.at + std::chrono::milliseconds(script.delay_ms),
                      Timer{std::move(respond), std::move(response), rec.path, counted});
      timer_cv_.notify_all();
      return;
    }
  }
  respond(std::move(response));  // stopping: no timer thread to wait for
  if (counted) leave(rec.path);
  answered(rec.path);
}

void ScriptedReceiver::limit_concurrency(const std::string& path, int max, ScriptedResponse over) {
  std::lock_guard lock(mu_);
  auto& l = limits_[path];
  l.max = max;
  l.over = std::move(over);
}

std::vector<std::chrono::steady_clock::time_point> ScriptedReceiver::refused(
    const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = limits_.find(path);
  return it == limits_.end() ? std::vector<std::chrono::steady_clock::time_point>{}
                             : it->second.refused;
}

int ScriptedReceiver::peak_concurrency(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = limits_.find(path);
  return it == limits_.end() ? 0 : it->second.peak;
}

void ScriptedReceiver::leave(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = limits_.find(path);
  if (it != limits_.end() && it->second.in_flight > 0) --it->second.in_flight;
}

void ScriptedReceiver::answered(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    ++answered_[path];
  }
  changed_.notify_all();
}

void ScriptedReceiver::run_timers() {
  std::unique_lock lock(mu_);
  while (true) {
    if (timers_.empty()) {
      if (stopping_) return;
      timer_cv_.wait(lock);
      continue;
    }
    auto first = timers_.begin();
    if (!stopping_ && first->first > std::chrono::steady_clock::now()) {
      timer_cv_.wait_until(lock, first->first);
      continue;
    }
    Timer t = std::move(first->second);
    timers_.erase(first);
    lock.unlock();
    t.respond(std::move(t.response));
    if (t.counted) leave(t.path);
    answered(t.path);
    lock.lock();
  }
}

std::size_t ScriptedReceiver::count(const std::string& path) const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(received_.begin(), received_.end(),
                    [&](const ReceivedRequest& r) { return r.path == path; }));
}

std::size_t ScriptedReceiver::total_count() const {
  std::lock_guard lock(mu_);
  return received_.size();
}

std::vector<ReceivedRequest> ScriptedReceiver::requests(const std::string& path) const {
  std::lock_guard lock(mu_);
  std::vector<ReceivedRequest> out;
  for (const auto& r : received_) {
    if (r.path == path) out.push_back(r);
  }
  return out;
}

std::vector<ReceivedRequest> ScriptedReceiver::all_requests() const {
  std::lock_guard lock(mu_);
  return received_;
}

std::map<std::string, int> ScriptedReceiver::webhook_id_counts(const std::string& path) const {
  std::lock_guard lock(mu_);
  std::map<std::string, int> out;
  for (const auto& r : received_) {
    if (!path.empty() && r.path != path) continue;
    if (auto id = r.header("webhook-id")) ++out[*id];
  }
  return out;
}

std::size_t ScriptedReceiver::distinct_webhook_ids(const std::string& path) const {
  return webhook_id_counts(path).size();
}

bool ScriptedReceiver::wait_for_count(const std::string& path, std::size_t n,
                                      std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] {
    return static_cast<std::size_t>(
               std::count_if(received_.begin(), received_.end(),
                             [&](const ReceivedRequest& r) { return r.path == path; })) >= n;
  });
}

bool ScriptedReceiver::wait_for_answered(const std::string& path, std::size_t n,
                                         std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] {
    if (!path.empty()) {
      auto it = answered_.find(path);
      return it != answered_.end() && it->second >= n;
    }
    std::size_t total = 0;
    for (const auto& [p, c] : answered_) total += c;
    return total >= n;
  });
}

}  // namespace hookrelay::test
