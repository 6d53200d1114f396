#include "shared/config/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>

#include <boost/asio/ip/address.hpp>

#include "shared/ascii.h"
#include "shared/config/lease_window.h"
#include "shared/http/http_url.h"
#include "shared/signing/webhook_scheme.h"

namespace hookrelay {
namespace {

// Thrown inside this file only; converted to Result at the boundary.
struct ConfigError {
  std::string message;
};

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ConfigError{field + ": " + what};
}

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

// Whether a field's value is a secret (a source's secrets, a token, a route's signing secrets or
// header values, a password): no error message shows any part of it.
enum class Secret { kNo, kYes };

// How environment variables are named: ^[A-Z_][A-Z0-9_]*$. What is between ${ and } in a secret
// and not named so may be part of the secret itself (a literal "k9${Qx7pL2}z").
bool looks_like_env_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// Replaces ${VAR} with its value. An unset variable is an error naming the field and variable
// (never the value; in a secret, the variable only when its name looks like one). "$$" is a
// literal "$".
std::string expand(const std::string& in, const std::string& field, const EnvLookup& env,
                   Secret secret = Secret::kNo) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '$') {
      out += '$';
      ++i;
    } else if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '{') {
      auto end = in.find('}', i + 2);
      if (end == std::string::npos) bad(field, "unterminated ${ in value");
      std::string name = in.substr(i + 2, end - i - 2);
      auto value = env(name);
      if (!value && secret == Secret::kYes && !looks_like_env_name(name)) {
        bad(field,
            "references an environment variable that is not set (its name is not shown: in a "
            "secret it may be part of the value; write $$ for a literal $)");
      }
      if (!value) bad(field, "environment variable " + name + " is not set");
      out += *value;
      i = end;
    } else {
      out += in[i];
    }
  }
  return out;
}

void only_keys(const YAML::Node& node, const std::string& field,
               const std::set<std::string>& allowed) {
  if (!node.IsMap()) bad(field.empty() ? "(top level)" : field, "must be a mapping");
  for (const auto& kv : node) {
    auto key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& k : allowed) list += (list.empty() ? "" : ", ") + k;
      bad(join(field, key), "unknown key (expected one of: " + list + ")");
    }
  }
}

std::string str(const YAML::Node& n, const std::string& field, const EnvLookup& env,
                Secret secret = Secret::kNo) {
  if (!n.IsScalar()) bad(field, "must be a string");
  return expand(n.as<std::string>(), field, env, secret);
}

// A whole number in decimal, with an optional sign (YAML 1.2's core schema: 010 is ten). yaml-cpp
// would read 010 as octal 8 and 0x10 as hex 16, and call a number past the type's range "not a
// number".
template <class T>
T whole_number(const YAML::Node& n, const std::string& field, T lo, T hi) {
  const auto text = n.as<std::string>();
  std::string_view digits = text;
  const bool negative = !digits.empty() && digits.front() == '-';
  if (!digits.empty() && (digits.front() == '+' || negative)) digits.remove_prefix(1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    const bool prefixed = digits.size() > 1 && digits[0] == '0' &&
                          std::string_view("xXoObB").find(digits[1]) != std::string_view::npos;
    bad(field, std::string(prefixed ? "must be a decimal number" : "must be a number") + ", got '" +
                   text + "'");
  }
  unsigned long long magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
  constexpr auto kMax = static_cast<unsigned long long>(std::numeric_limits<long long>::max());
  const auto low = static_cast<long long>(lo);
  const auto high = static_cast<long long>(std::min<unsigned long long>(hi, kMax));
  long long v = 0;
  bool in_range = ec == std::errc() && magnitude <= kMax;
  if (in_range) {
    v = negative ? -static_cast<long long>(magnitude) : static_cast<long long>(magnitude);
    in_range = v >= low && v <= high;
  }
  if (!in_range) {
    std::ostringstream os;
    os << "must be between " << lo << " and " << hi << ", got " << text;
    bad(field, os.str());
  }
  return static_cast<T>(v);
}

template <class T>
T num(const YAML::Node& n, const std::string& field, T lo, T hi) {
  if (!n.IsScalar()) bad(field, "must be a number");
  if constexpr (std::is_integral_v<T>) return whole_number<T>(n, field, lo, hi);
  T v{};
  try {
    v = n.as<T>();
  } catch (const YAML::Exception&) {
    bad(field, "must be a number, got '" + n.as<std::string>() + "'");
  }
  // `!(v >= lo)`, not `v < lo`: a NaN (YAML's .nan) fails it too.
  if (!(v >= lo) || v > hi) {
    std::ostringstream os;
    os << "must be between " << lo << " and " << hi << ", got " << v;
    bad(field, os.str());
  }
  return v;
}

// A calls-per-second limit: 0 (unlimited) or from 0.001 up. A smaller positive rate would wait
// longer between calls than anything can count (a rate of 1e-20 is one call in three trillion
// years): refused rather than taken for a limit no call ever passes.
double call_rate(const YAML::Node& n, const std::string& field) {
  constexpr double kMinRate = 0.001;
  const auto v = num<double>(n, field, 0.0, 1e6);
  if (v > 0 && v < kMinRate) {
    std::ostringstream os;
    os << "must be 0 (unlimited) or at least " << kMinRate << ", got " << v;
    bad(field, os.str());
  }
  return v;
}

bool boolean(const YAML::Node& n, const std::string& field) {
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    bad(field, "must be true or false");
  }
}

std::vector<std::string> strings(const YAML::Node& n, const std::string& field,
                                 const EnvLookup& env, Secret secret = Secret::kNo) {
  if (!n.IsSequence()) bad(field, "must be a list");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    out.push_back(str(n[i], field + "[" + std::to_string(i) + "]", env, secret));
  }
  return out;
}

SchemeKind parse_scheme(const std::string& s, const std::string& field) {
  if (s == "standard-webhooks") return SchemeKind::kStandardWebhooks;
  if (s == "github") return SchemeKind::kGithub;
  if (s == "stripe") return SchemeKind::kStripe;
  if (s == "slack") return SchemeKind::kSlack;
  if (s == "shopify") return SchemeKind::kShopify;
  if (s == "hmac") return SchemeKind::kHmac;
  bad(field, "unknown scheme '" + s +
                 "' (expected standard-webhooks, github, stripe, slack, shopify or hmac)");
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return true;
}

bool valid_header_name(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

HostPort check_listen(const std::string& v, const std::string& field) {
  auto hp = parse_host_port(v, field);
  if (!hp) throw ConfigError{hp.error().message};
  return *hp;
}

// Whether two listeners would be bound to one port: both bind with SO_REUSEPORT, so the second
// bind succeeds and the kernel spreads connections between them. The same port is shared when the
// addresses are equal (however written: 127.0.0.1 and ::ffff:127.0.0.1, 0.0.0.0:8080 and
// 0.0.0.0:08080) or either is a wildcard (0.0.0.0, ::).
bool share_a_port(const HostPort& a, const HostPort& b) {
  if (a.port != b.port) return false;
  auto normal = [](const std::string& host) {
    auto address = boost::asio::ip::make_address(host);
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      return boost::asio::ip::address(
          boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6()));
    }
    return address;
  };
  const auto x = normal(a.host);
  const auto y = normal(b.host);
  return x == y || x.is_unspecified() || y.is_unspecified();
}

// The host key is derived here once, so the worker never parses a route's URL per delivery.
void check_url(RouteConfig& route, const std::string& field) {
  auto parsed = parse_http_url(route.url);
  if (!parsed) bad(field, parsed.error().message);
  route.host_key = parsed->host_key();
}

SourceConfig parse_source(const std::string& name, const YAML::Node& n, const std::string& field,
                          const EnvLookup& env) {
  only_keys(n, field,
            {"scheme", "secrets", "tolerance_seconds", "header", "encoding", "prefix", "algorithm",
             "timestamp_header", "event_id_header"});
  SourceConfig s;
  s.name = name;
  if (!valid_name(name)) bad(field, "source name must be 1-64 characters of [A-Za-z0-9._-]");
  if (!n["scheme"]) bad(join(field, "scheme"), "is required");
  s.scheme = parse_scheme(str(n["scheme"], join(field, "scheme"), env), join(field, "scheme"));
  if (!n["secrets"]) bad(join(field, "secrets"), "is required (at least one secret)");
  s.secrets = strings(n["secrets"], join(field, "secrets"), env, Secret::kYes);
  if (s.secrets.empty()) bad(join(field, "secrets"), "must list at least one secret");
  for (std::size_t i = 0; i < s.secrets.size(); ++i) {
    if (s.secrets[i].empty())
      bad(join(field, "secrets") + "[" + std::to_string(i) + "]", "is empty");
  }
  if (n["tolerance_seconds"])
    s.tolerance_seconds =
        num<int>(n["tolerance_seconds"], join(field, "tolerance_seconds"), 1, 86400);
  if (n["header"]) s.header = str(n["header"], join(field, "header"), env);
  if (n["encoding"]) s.encoding = str(n["encoding"], join(field, "encoding"), env);
  if (n["prefix"]) s.prefix = str(n["prefix"], join(field, "prefix"), env);
  if (n["algorithm"]) s.algorithm = str(n["algorithm"], join(field, "algorithm"), env);
  if (n["timestamp_header"])
    s.timestamp_header = str(n["timestamp_header"], join(field, "timestamp_header"), env);
  if (n["event_id_header"])
    s.event_id_header = str(n["event_id_header"], join(field, "event_id_header"), env);
  if (s.scheme == SchemeKind::kHmac) {
    if (!valid_header_name(s.header))
      bad(join(field, "header"), "is required for scheme hmac (a header name)");
    if (s.encoding != "hex" && s.encoding != "base64")
      bad(join(field, "encoding"), "must be hex or base64");
    if (s.algorithm != "sha1" && s.algorithm != "sha256" && s.algorithm != "sha512") {
      bad(join(field, "algorithm"), "must be sha1, sha256 or sha512");
    }
    if (!s.timestamp_header.empty() && !valid_header_name(s.timestamp_header))
      bad(join(field, "timestamp_header"), "is not a valid header name");
    if (!s.event_id_header.empty() && !valid_header_name(s.event_id_header))
      bad(join(field, "event_id_header"), "is not a valid header name");
  } else {
    for (const char* k :
         {"header", "encoding", "prefix", "algorithm", "timestamp_header", "event_id_header"}) {
      if (n[k])
        bad(join(field, k),
            std::string("applies only to scheme hmac, not ") + scheme_name(s.scheme));
    }
  }
  // Only a signed timestamp is held to the tolerance (shared/signing/signature_verifier.cpp):
  // on a scheme without one, the setting would bound no replay while it looked as if it did.
  const bool checks_timestamp = s.scheme == SchemeKind::kStandardWebhooks ||
                                s.scheme == SchemeKind::kStripe || s.scheme == SchemeKind::kSlack ||
                                (s.scheme == SchemeKind::kHmac && !s.timestamp_header.empty());
  if (n["tolerance_seconds"] && !checks_timestamp) {
    bad(join(field, "tolerance_seconds"),
        s.scheme == SchemeKind::kHmac
            ? std::string("applies only with timestamp_header: scheme hmac without one checks no "
                          "timestamp, so nothing bounds a replay")
            : std::string("scheme ") + scheme_name(s.scheme) +
                  " signs no timestamp, so nothing bounds a replay; it applies only to "
                  "standard-webhooks, stripe, slack and hmac with timestamp_header");
  }
  if (s.scheme == SchemeKind::kStandardWebhooks) {
    for (std::size_t i = 0; i < s.secrets.size(); ++i) {
      if (s.secrets[i].rfind("whsec_", 0) != 0 || !decode_standard_webhooks_secret(s.secrets[i])) {
        bad(join(field, "secrets") + "[" + std::to_string(i) + "]",
            "standard-webhooks secrets are whsec_ followed by base64");
      }
    }
  }
  return s;
}

std::string at(const std::string& field, std::size_t i) {
  return field + "[" + std::to_string(i) + "]";
}

// `schedule_seconds`, `max_attempts`, `max_age_seconds` over `out` (the defaults, or for a route
// the global policy). A route's tiers are bounded by `longest_tier`: retry tiers are topics
// shared by every route, and a due time past the longest one's delay is cut to it.
void parse_retry(const YAML::Node& r, const std::string& field, RetryConfig& out,
                 int longest_tier) {
  only_keys(r, field, {"schedule_seconds", "max_attempts", "max_age_seconds"});
  if (auto s = r["schedule_seconds"]) {
    if (!s.IsSequence() || s.size() == 0)
      bad(join(field, "schedule_seconds"), "must be a non-empty list of seconds");
    if (s.size() > 16) bad(join(field, "schedule_seconds"), "at most 16 tiers");
    out.schedule_seconds.clear();
    for (std::size_t i = 0; i < s.size(); ++i) {
      std::string f = at(join(field, "schedule_seconds"), i);
      int v = num<int>(s[i], f, 1, 7 * 86400);
      if (!out.schedule_seconds.empty() && v <= out.schedule_seconds.back())
        bad(f, "must be greater than the previous tier");
      if (v > longest_tier) {
        bad(f, "must be at most the longest delay of retry.schedule_seconds (" +
                   std::to_string(longest_tier) + "): retry tiers are topics every route shares");
      }
      out.schedule_seconds.push_back(v);
    }
  }
  if (r["max_attempts"])
    out.max_attempts = num<int>(r["max_attempts"], join(field, "max_attempts"), 1, 1000);
  if (r["max_age_seconds"])
    out.max_age_seconds =
        num<int>(r["max_age_seconds"], join(field, "max_age_seconds"), 1, 30 * 86400);
}

// Header names hookrelay sets itself, or that belong to one connection (hop-by-hop), and so
// cannot be given per route; empty when `name` may be configured.
std::string refused_header(const std::string& name) {
  const std::string n = ascii_lower(name);
  if (n.rfind("webhook-", 0) == 0)
    return "webhook-* headers are the Standard Webhooks headers hookrelay sets";
  if (n.rfind("x-hookrelay-", 0) == 0) return "X-Hookrelay-* headers are set by hookrelay";
  if (n == "idempotency-key") return "Idempotency-Key is set by hookrelay";
  if (n == "content-length") return "Content-Length is the length of the body hookrelay sends";
  if (n.rfind("proxy-", 0) == 0) return "Proxy-* headers are hop-by-hop";
  for (const char* h :
       {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}) {
    if (n == h) return name + " is a hop-by-hop header the HTTP client sets";
  }
  if (n == "expect") return name + " is set by the HTTP client (hookrelay sends no 100-continue)";
  return {};
}

// A route's `headers`. Values are secrets (tokens from ${VAR}): no message quotes one.
std::vector<std::pair<std::string, std::string>> parse_route_headers(const YAML::Node& n,
                                                                     const std::string& field,
                                                                     const EnvLookup& env) {
  if (!n.IsMap()) bad(field, "must be a mapping of header name to value");
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> seen;
  for (const auto& kv : n) {
    auto name = kv.first.as<std::string>();
    const std::string f = join(field, name);
    if (!valid_header_name(name)) bad(f, "is not a valid header name ([A-Za-z0-9_-])");
    if (auto why = refused_header(name); !why.empty()) bad(f, "cannot be set per route: " + why);
    if (!seen.insert(ascii_lower(name)).second)
      bad(f, "is given twice (header names are case-insensitive)");
    auto value = str(kv.second, f, env, Secret::kYes);
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      bad(f, "value contains CR, LF or NUL (after ${VAR} expansion)");
    }
    out.emplace_back(name, std::move(value));
  }
  return out;
}

// A filter value: a quoted scalar is a string; a plain one is true/false, null, a number or else
// a string, as YAML reads it.
JsonScalar filter_scalar(const YAML::Node& n, const std::string& field, const EnvLookup& env) {
  if (!n.IsScalar() && !n.IsNull()) bad(field, "must be a string, number, boolean or null");
  JsonScalar v;
  if (n.IsNull()) {
    v.kind = JsonScalar::Kind::kNull;
    return v;
  }
  v.string = expand(n.Scalar(), field, env);
  if (n.Tag() == "!") return v;  // quoted: a string, whatever it looks like
  const std::string& t = v.string;
  if (t == "true" || t == "True" || t == "TRUE" || t == "false" || t == "False" || t == "FALSE") {
    v.kind = JsonScalar::Kind::kBool;
    v.boolean = t[0] == 't' || t[0] == 'T';
    return v;
  }
  if (t == "null" || t == "Null" || t == "NULL" || t == "~") {
    v.kind = JsonScalar::Kind::kNull;
    return v;
  }
  const char* b = t.data();
  const char* e = t.data() + t.size();
  if (auto [p, ec] = std::from_chars(b, e, v.integer); ec == std::errc() && p == e && !t.empty()) {
    v.kind = JsonScalar::Kind::kNumber;
    v.integral = true;
    v.number = static_cast<double>(v.integer);
    return v;
  }
  if (auto [p, ec] = std::from_chars(b, e, v.number);
      ec == std::errc() && p == e && std::isfinite(v.number)) {
    v.kind = JsonScalar::Kind::kNumber;
    return v;
  }
  v.number = 0;
  return v;
}

RouteFilter parse_filter(const YAML::Node& n, const std::string& field, const EnvLookup& env) {
  only_keys(n, field, {"header", "body"});
  RouteFilter f;
  if (auto h = n["header"]) {
    const std::string hf = join(field, "header");
    if (!h.IsMap()) bad(hf, "must be a mapping of header name to a value or a list of values");
    std::set<std::string> seen;
    for (const auto& kv : h) {
      auto name = kv.first.as<std::string>();
      const std::string nf = join(hf, name);
      if (!valid_header_name(name)) bad(nf, "is not a valid header name ([A-Za-z0-9_-])");
      if (!seen.insert(ascii_lower(name)).second)
        bad(nf, "is given twice (header names are case-insensitive)");
      HeaderCondition c;
      c.name = ascii_lower(name);
      if (kv.second.IsSequence()) {
        if (kv.second.size() == 0) bad(nf, "must list at least one value");
        c.values = strings(kv.second, nf, env);
      } else if (kv.second.IsScalar()) {
        c.values.push_back(str(kv.second, nf, env));
      } else {
        bad(nf, "must be a value or a list of values");
      }
      f.header.push_back(std::move(c));
    }
  }
  if (auto b = n["body"]) {
    const std::string bf = join(field, "body");
    if (!b.IsSequence()) bad(bf, "must be a list of {pointer, equals | in | exists} conditions");
    for (std::size_t i = 0; i < b.size(); ++i) {
      const std::string cf = at(bf, i);
      only_keys(b[i], cf, {"pointer", "equals", "in", "exists"});
      BodyCondition c;
      if (!b[i]["pointer"])
        bad(join(cf, "pointer"), "is required (a JSON pointer such as /action)");
      auto pointer = parse_json_pointer(str(b[i]["pointer"], join(cf, "pointer"), env));
      if (!pointer) bad(join(cf, "pointer"), pointer.error().message);
      c.pointer = std::move(*pointer);
      std::vector<std::string> ops;
      for (const char* op : {"equals", "in", "exists"}) {
        if (b[i][op]) ops.emplace_back(op);
      }
      if (ops.empty()) bad(cf, "needs one operator: equals, in or exists");
      if (ops.size() > 1)
        bad(join(cf, ops[1]), "only one operator per condition (this one also has " + ops[0] + ")");
      const std::string of = join(cf, ops[0]);
      if (ops[0] == "equals") {
        c.op = BodyCondition::Op::kEquals;
        c.values.push_back(filter_scalar(b[i]["equals"], of, env));
      } else if (ops[0] == "in") {
        c.op = BodyCondition::Op::kIn;
        const auto& list = b[i]["in"];
        if (!list.IsSequence() || list.size() == 0) bad(of, "must be a non-empty list of values");
        for (std::size_t j = 0; j < list.size(); ++j)
          c.values.push_back(filter_scalar(list[j], at(of, j), env));
      } else {
        c.op = BodyCondition::Op::kExists;
        c.exists = boolean(b[i]["exists"], of);
      }
      f.body.push_back(std::move(c));
    }
  }
  return f;
}

void parse_host_states(const YAML::Node& h, const std::string& field, HostStatesConfig& out) {
  if (!h.IsMap()) bad(field, "must be a mapping (publish_interval_ms, stale_after_ms)");
  only_keys(h, field, {"publish_interval_ms", "stale_after_ms"});
  if (h["publish_interval_ms"]) {
    out.publish_interval_ms =
        num<int>(h["publish_interval_ms"], join(field, "publish_interval_ms"), 100, 600000);
  }
  if (h["stale_after_ms"])
    out.stale_after_ms = num<int>(h["stale_after_ms"], join(field, "stale_after_ms"), 200, 3600000);
  if (out.stale_after_ms <= out.publish_interval_ms) {
    bad(join(field, "stale_after_ms"),
        "must be greater than publish_interval_ms (" + std::to_string(out.publish_interval_ms) +
            "), got " + std::to_string(out.stale_after_ms) +
            ": every worker's row would be stale before its next write");
  }
}

void parse_adaptive_limit(const YAML::Node& a, const std::string& field, AdaptiveLimitConfig& out) {
  if (!a.IsMap())
    bad(field, "must be a mapping (enabled, decrease_factor, increase_step, max_pause_seconds)");
  only_keys(a, field, {"enabled", "decrease_factor", "increase_step", "max_pause_seconds"});
  if (a["enabled"]) out.enabled = boolean(a["enabled"], join(field, "enabled"));
  if (a["decrease_factor"])
    out.decrease_factor =
        num<double>(a["decrease_factor"], join(field, "decrease_factor"), 0.1, 0.95);
  if (a["increase_step"])
    out.increase_step = num<double>(a["increase_step"], join(field, "increase_step"), 0.01, 100);
  if (a["max_pause_seconds"])
    out.max_pause_seconds =
        num<int>(a["max_pause_seconds"], join(field, "max_pause_seconds"), 0, 3600);
}

OrderingKey parse_ordering_key(const YAML::Node& n, const std::string& field, const EnvLookup& env,
                               bool ordered, const std::string& ordered_field) {
  if (!ordered) bad(field, "is read only by an ordered route: set " + ordered_field + ": true");
  if (!n.IsMap() || n.size() != 1)
    bad(field, "must be { header: NAME } or { json_pointer: /path } (one of them)");
  only_keys(n, field, {"header", "json_pointer"});
  OrderingKey k;
  if (n["header"]) {
    const std::string hf = join(field, "header");
    k.from = OrderingKey::From::kHeader;
    k.header = ascii_lower(str(n["header"], hf, env));
    if (!valid_header_name(k.header)) bad(hf, "is not a valid header name ([A-Za-z0-9_-])");
    return k;
  }
  const std::string pf = join(field, "json_pointer");
  auto pointer = parse_json_pointer(str(n["json_pointer"], pf, env));
  if (!pointer) bad(pf, pointer.error().message);
  if (pointer->tokens.empty()) bad(pf, "must name a member of the body, not the whole body (\"\")");
  k.from = OrderingKey::From::kJsonPointer;
  k.pointer = std::move(*pointer);
  return k;
}

void parse_store_batching(const YAML::Node& b, const std::string& field, StoreBatchingConfig& out) {
  if (!b.IsMap()) bad(field, "must be a mapping (min_batch, max_wait_ms, record_max_wait_ms)");
  only_keys(b, field, {"min_batch", "max_wait_ms", "record_max_wait_ms"});
  if (b["min_batch"]) out.min_batch = num<int>(b["min_batch"], join(field, "min_batch"), 1, 10000);
  if (b["max_wait_ms"])
    out.max_wait_ms = num<int>(b["max_wait_ms"], join(field, "max_wait_ms"), 0, 1000);
  if (b["record_max_wait_ms"]) {
    out.record_max_wait_ms =
        num<int>(b["record_max_wait_ms"], join(field, "record_max_wait_ms"), 0, 1000);
  }
}

RouteConfig parse_route(const YAML::Node& n, const std::string& field, const EnvLookup& env,
                        const RetryConfig& global_retry) {
  only_keys(n, field,
            {"name", "url", "secret", "secrets", "timeout_ms", "ordered", "filter", "headers",
             "retry", "max_in_flight", "rate_per_second", "suspend_after", "ordering_key"});
  RouteConfig r;
  if (!n["name"]) bad(join(field, "name"), "is required");
  r.name = str(n["name"], join(field, "name"), env);
  if (!valid_name(r.name)) bad(join(field, "name"), "must be 1-64 characters of [A-Za-z0-9._-]");
  if (!n["url"]) bad(join(field, "url"), "is required");
  r.url = str(n["url"], join(field, "url"), env);
  check_url(r, join(field, "url"));
  if (n["secret"] && n["secrets"])
    bad(join(field, "secrets"), "give either secret or secrets, not both");
  const auto check_secret = [](const std::string& secret, const std::string& f) {
    if (secret.rfind("whsec_", 0) != 0 || !decode_standard_webhooks_secret(secret)) {
      bad(f, "must be whsec_ followed by base64 (Standard Webhooks secret)");
    }
  };
  if (n["secret"]) {
    r.secrets.push_back(str(n["secret"], join(field, "secret"), env, Secret::kYes));
    check_secret(r.secrets.back(), join(field, "secret"));
  }
  if (n["secrets"]) {
    r.secrets = strings(n["secrets"], join(field, "secrets"), env, Secret::kYes);
    if (r.secrets.empty())
      bad(join(field, "secrets"), "must list at least one secret (or leave the key out)");
    if (r.secrets.size() > 8) bad(join(field, "secrets"), "at most 8 secrets");
    for (std::size_t i = 0; i < r.secrets.size(); ++i)
      check_secret(r.secrets[i], at(join(field, "secrets"), i));
  }
  if (n["timeout_ms"])
    r.timeout_ms = num<int>(n["timeout_ms"], join(field, "timeout_ms"), 100, 600000);
  if (n["ordered"]) r.ordered = boolean(n["ordered"], join(field, "ordered"));
  if (n["ordering_key"])
    r.ordering_key = parse_ordering_key(n["ordering_key"], join(field, "ordering_key"), env,
                                        r.ordered, join(field, "ordered"));
  if (n["filter"]) r.filter = parse_filter(n["filter"], join(field, "filter"), env);
  if (n["headers"]) r.headers = parse_route_headers(n["headers"], join(field, "headers"), env);
  if (n["retry"]) {
    r.retry = global_retry;
    const auto& tiers = global_retry.schedule_seconds;
    parse_retry(n["retry"], join(field, "retry"), *r.retry,
                *std::max_element(tiers.begin(), tiers.end()));
  }
  if (n["max_in_flight"])
    r.max_in_flight = num<int>(n["max_in_flight"], join(field, "max_in_flight"), 1, 100000);
  if (n["rate_per_second"])
    r.rate_per_second = call_rate(n["rate_per_second"], join(field, "rate_per_second"));
  if (auto s = n["suspend_after"]) {
    const std::string sf = join(field, "suspend_after");
    only_keys(s, sf, {"consecutive_failures", "or_failing_for_seconds"});
    SuspendAfter sa;
    if (s["consecutive_failures"]) {
      sa.consecutive_failures =
          num<int>(s["consecutive_failures"], join(sf, "consecutive_failures"), 1, 1000000000);
    }
    if (s["or_failing_for_seconds"]) {
      sa.or_failing_for_seconds =
          num<int>(s["or_failing_for_seconds"], join(sf, "or_failing_for_seconds"), 1, 365 * 86400);
    }
    if (sa.consecutive_failures == 0 && sa.or_failing_for_seconds == 0) {
      bad(sf, "needs consecutive_failures, or_failing_for_seconds or both");
    }
    r.suspend_after = sa;
  }
  return r;
}

// librdkafka properties that hold a secret: sasl.password, ssl.key.password, ssl.key.pem,
// sasl.oauthbearer.client.secret, sasl.oauthbearer.config and the like.
Secret secret_property(const std::string& key) {
  const bool secret = key.find("password") != std::string::npos ||
                      key.find("secret") != std::string::npos || key.rfind("ssl.key", 0) == 0 ||
                      key == "sasl.oauthbearer.config";
  return secret ? Secret::kYes : Secret::kNo;
}

std::map<std::string, std::string> kafka_properties(const YAML::Node& n, const std::string& field,
                                                    const EnvLookup& env) {
  std::map<std::string, std::string> out;
  if (!n) return out;
  if (!n.IsMap()) bad(field, "must be a mapping of librdkafka properties");
  for (const auto& kv : n) {
    auto key = kv.first.as<std::string>();
    out[key] = str(kv.second, field + "." + key, env, secret_property(key));
  }
  return out;
}

// librdkafka properties that would break the promise (an acknowledged message kept, and not
// acted on twice) are refused, naming the field they were set in. The services set these
// themselves; a config may only restate the safe value.
void check_guarantees(const Config& c) {
  const KafkaConfig& k = c.kafka;
  auto refuse = [&](const std::string& key, bool producer, const std::string& why) {
    bad(k.field_of(key, producer), why);
  };
  for (const auto* key : {"bootstrap.servers", "metadata.broker.list"}) {
    if (k.properties.count(key) || k.producer_properties.count(key) ||
        k.consumer_properties.count(key)) {
      bad("kafka.properties." + std::string(key), "set the brokers with kafka.bootstrap_servers");
    }
  }
  const auto producer = k.producer_map();
  auto has = [](const std::map<std::string, std::string>& m, const char* key) {
    return m.find(key);
  };
  for (const char* key : {"acks", "request.required.acks"}) {
    if (auto it = has(producer, key);
        it != producer.end() && it->second != "all" && it->second != "-1") {
      refuse(key, true,
             "must be all (-1): ingest answers 2xx only for messages every in-sync replica has");
    }
  }
  if (auto it = has(producer, "enable.idempotence");
      it != producer.end() && ascii_lower(it->second) != "true") {
    refuse("enable.idempotence", true,
           "must be true: a retried produce must not write a message twice");
  }
  for (const char* key : {"max.in.flight.requests.per.connection", "max.in.flight"}) {
    if (auto it = has(producer, key); it != producer.end()) {
      int n = 0;
      auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
      if (ec != std::errc() || ptr != it->second.data() + it->second.size() || n < 1 || n > 5) {
        refuse(key, true,
               "must be 1-5: the idempotent producer keeps order only up to 5 in flight");
      }
    }
  }
  for (const char* key : {"message.timeout.ms", "delivery.timeout.ms"}) {
    // Restating kafka.produce_timeout_ms is allowed (a config written before this was refused).
    if (auto it = has(producer, key);
        it != producer.end() && it->second != std::to_string(k.produce_timeout_ms)) {
      refuse(key, true,
             "set kafka.produce_timeout_ms instead: it bounds how long ingest waits for Kafka "
             "before it answers 503 (0 here would mean never)");
    }
  }
  if (has(producer, "transactional.id") != producer.end()) {
    refuse("transactional.id", true,
           "is not supported: hookrelay's producers are idempotent, not transactional");
  }
  const auto consumer = k.consumer_map();
  if (auto it = has(consumer, "enable.auto.offset.store");
      it != consumer.end() && ascii_lower(it->second) != "false") {
    refuse("enable.auto.offset.store", false,
           "must be false: the worker stores an offset only when every delivery before it is "
           "finished");
  }
  if (auto it = has(consumer, "enable.auto.commit");
      it != consumer.end() && ascii_lower(it->second) != "true") {
    refuse("enable.auto.commit", false, "must be true: stored offsets are committed by the client");
  }
  if (auto it = has(consumer, "group.id");
      it != consumer.end() && it->second != c.worker.group_id) {
    refuse("group.id", false,
           "must not differ from worker.group_id ('" + c.worker.group_id + "'); set that instead");
  }
  if (has(consumer, "group.instance.id") != consumer.end()) {
    refuse("group.instance.id", false,
           "set worker.group_instance_id (or worker.static_membership) instead");
  }
  if (auto it = has(consumer, "auto.offset.reset"); it != consumer.end()) {
    static const std::set<std::string> earliest = {"earliest", "smallest", "beginning"};
    if (!earliest.count(ascii_lower(it->second))) {
      refuse("auto.offset.reset", false,
             "must be earliest: a partition without a committed offset is read "
             "from its start, never skipped");
    }
  }
  if (auto it = has(consumer, "isolation.level");
      it != consumer.end() && ascii_lower(it->second) != "read_committed") {
    refuse("isolation.level", false, "must be read_committed (the default)");
  }
}

// Kafka's rule for group.instance.id (as for topic names): 1-249 characters of [A-Za-z0-9._-].
bool valid_group_instance_id(const std::string& s) {
  if (s.empty() || s.size() > 249) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return true;
}

// worker.group_instance_id / worker.static_membership. The id is never taken from the
// environment unless asked for: two workers on one host share $HOSTNAME, and two live members
// with one id fence each other.
void parse_static_membership(const YAML::Node& w, WorkerConfig& wc, const EnvLookup& env) {
  if (w["static_membership"])
    wc.static_membership = boolean(w["static_membership"], "worker.static_membership");
  if (w["group_instance_id"])
    wc.group_instance_id = str(w["group_instance_id"], "worker.group_instance_id", env);
  if (!wc.group_instance_id.empty()) {  // "" (the documented default) means: not set
    if (w["static_membership"] && !wc.static_membership) {
      bad("worker.static_membership",
          "is false but worker.group_instance_id is set; drop one of them");
    }
    wc.static_membership = true;
  } else if (wc.static_membership) {
    std::string from;
    for (const char* var : {"POD_NAME", "HOSTNAME"}) {
      if (auto v = env(var); v && !v->empty()) {
        wc.group_instance_id = *v;
        from = var;
        break;
      }
    }
    if (from.empty()) {
      bad("worker.group_instance_id",
          "static_membership is true but neither POD_NAME nor HOSTNAME is set; "
          "set worker.group_instance_id to an id unique among live workers");
    }
    if (!valid_group_instance_id(wc.group_instance_id)) {
      bad("worker.group_instance_id", "taken from $" + from +
                                          ", must be 1-249 characters of [A-Za-z0-9._-], got '" +
                                          wc.group_instance_id + "'");
    }
  }
  if (wc.static_membership && !valid_group_instance_id(wc.group_instance_id)) {
    bad("worker.group_instance_id",
        "must be 1-249 characters of [A-Za-z0-9._-] (unique among live workers), got '" +
            wc.group_instance_id + "'");
  }
}

void parse_admin(const YAML::Node& a, AdminConfig& ac, const EnvLookup& env) {
  only_keys(a, "admin", {"listen", "tokens", "threads", "max_replay_keys", "statement_timeout_ms"});
  if (a["listen"]) ac.listen = str(a["listen"], "admin.listen", env);
  if (a["tokens"]) {
    ac.tokens = strings(a["tokens"], "admin.tokens", env, Secret::kYes);
    for (std::size_t i = 0; i < ac.tokens.size(); ++i) {
      if (ac.tokens[i].size() < 16)
        bad("admin.tokens[" + std::to_string(i) + "]", "must be at least 16 characters");
    }
  }
  if (a["threads"]) ac.threads = num<int>(a["threads"], "admin.threads", 1, 64);
  if (a["max_replay_keys"])
    ac.max_replay_keys = num<int>(a["max_replay_keys"], "admin.max_replay_keys", 1, 10000000);
  if (a["statement_timeout_ms"]) {
    ac.statement_timeout_ms =
        num<int>(a["statement_timeout_ms"], "admin.statement_timeout_ms", 0, 3600000);
  }
}

void parse_topics(const YAML::Node& t, TopicsConfig& tc) {
  only_keys(t, "topics",
            {"partitions", "retry_partitions", "dlq_partitions", "replication_factor",
             "min_insync_replicas", "retention_ms", "dlq_retention_ms", "max_message_bytes"});
  constexpr int64_t kDay = 24LL * 3600 * 1000;
  if (t["partitions"]) tc.partitions = num<int>(t["partitions"], "topics.partitions", 1, 10000);
  if (t["retry_partitions"])
    tc.retry_partitions = num<int>(t["retry_partitions"], "topics.retry_partitions", 0, 10000);
  if (t["dlq_partitions"])
    tc.dlq_partitions = num<int>(t["dlq_partitions"], "topics.dlq_partitions", 0, 10000);
  if (t["replication_factor"])
    tc.replication_factor = num<int>(t["replication_factor"], "topics.replication_factor", 1, 32);
  if (t["min_insync_replicas"])
    tc.min_insync_replicas =
        num<int>(t["min_insync_replicas"], "topics.min_insync_replicas", 1, 32);
  // At least an hour: a message must outlive any worker pause; -1 (forever) is not offered.
  if (t["retention_ms"])
    tc.retention_ms = num<int64_t>(t["retention_ms"], "topics.retention_ms", 3600000, 3650 * kDay);
  if (t["dlq_retention_ms"])
    tc.dlq_retention_ms =
        num<int64_t>(t["dlq_retention_ms"], "topics.dlq_retention_ms", 3600000, 3650 * kDay);
  if (t["max_message_bytes"])
    tc.max_message_bytes =
        num<int64_t>(t["max_message_bytes"], "topics.max_message_bytes", 0, 1LL << 30);
  const bool both_one = tc.replication_factor == 1 && tc.min_insync_replicas == 1;
  if (!both_one && tc.min_insync_replicas >= tc.replication_factor) {
    bad("topics.min_insync_replicas", "must be less than topics.replication_factor (" +
                                          std::to_string(tc.replication_factor) + "), got " +
                                          std::to_string(tc.min_insync_replicas) +
                                          ": otherwise one broker down refuses every acks=all "
                                          "write (1 and 1 is allowed for one-broker setups)");
  }
}

Config parse(const YAML::Node& document, const EnvLookup& env) {
  Config c;
  // An empty file is every default, with the environment's overrides and the checks below.
  const YAML::Node root =
      document && !document.IsNull() ? document : YAML::Node(YAML::NodeType::Map);
  only_keys(root, "",
            {"kafka", "topics", "ingest", "sources", "api_tokens", "routes", "postgres", "worker",
             "retry", "log_level", "admin"});

  if (auto k = root["kafka"]) {
    only_keys(k, "kafka",
              {"bootstrap_servers", "properties", "producer_properties", "consumer_properties",
               "produce_timeout_ms"});
    if (k["bootstrap_servers"])
      c.kafka.bootstrap_servers = str(k["bootstrap_servers"], "kafka.bootstrap_servers", env);
    if (k["produce_timeout_ms"])
      c.kafka.produce_timeout_ms =
          num<int>(k["produce_timeout_ms"], "kafka.produce_timeout_ms", 100, 300000);
    c.kafka.properties = kafka_properties(k["properties"], "kafka.properties", env);
    c.kafka.producer_properties =
        kafka_properties(k["producer_properties"], "kafka.producer_properties", env);
    c.kafka.consumer_properties =
        kafka_properties(k["consumer_properties"], "kafka.consumer_properties", env);
  }
  if (auto t = root["topics"]) parse_topics(t, c.topics);
  if (auto i = root["ingest"]) {
    only_keys(i, "ingest",
              {"listen", "max_body_bytes", "threads", "retry_after_seconds", "shutdown_grace_ms",
               "max_connections", "max_buffered_body_bytes", "max_headers", "header_timeout_ms",
               "idle_timeout_ms", "metrics_listen"});
    if (i["listen"]) c.ingest.listen = str(i["listen"], "ingest.listen", env);
    if (i["metrics_listen"])
      c.ingest.metrics_listen = str(i["metrics_listen"], "ingest.metrics_listen", env);
    if (i["max_body_bytes"])
      c.ingest.max_body_bytes =
          num<std::size_t>(i["max_body_bytes"], "ingest.max_body_bytes", 1, 64u << 20);
    if (i["threads"]) c.ingest.threads = num<int>(i["threads"], "ingest.threads", 0, 256);
    if (i["retry_after_seconds"])
      c.ingest.retry_after_seconds =
          num<int>(i["retry_after_seconds"], "ingest.retry_after_seconds", 1, 3600);
    if (i["shutdown_grace_ms"])
      c.ingest.shutdown_grace_ms =
          num<int>(i["shutdown_grace_ms"], "ingest.shutdown_grace_ms", 0, 600000);
    if (i["max_connections"])
      c.ingest.max_connections =
          num<int>(i["max_connections"], "ingest.max_connections", 1, 1000000);
    if (i["max_buffered_body_bytes"])
      c.ingest.max_buffered_body_bytes = num<std::size_t>(
          i["max_buffered_body_bytes"], "ingest.max_buffered_body_bytes", 1, std::size_t{1} << 40);
    if (c.ingest.max_buffered_body_bytes < c.ingest.max_body_bytes) {
      bad("ingest.max_buffered_body_bytes",
          "must be at least ingest.max_body_bytes (" + std::to_string(c.ingest.max_body_bytes) +
              "), or no request of the largest size could ever be read");
    }
    if (i["max_headers"])
      c.ingest.max_headers =
          num<int>(i["max_headers"], "ingest.max_headers", 8, IngestConfig::kMaxMaxHeaders);
    if (i["header_timeout_ms"])
      c.ingest.header_timeout_ms =
          num<int>(i["header_timeout_ms"], "ingest.header_timeout_ms", 100, 600000);
    if (i["idle_timeout_ms"])
      c.ingest.idle_timeout_ms =
          num<int>(i["idle_timeout_ms"], "ingest.idle_timeout_ms", 100, 3600000);
  }
  if (auto s = root["sources"]) {
    if (!s.IsMap()) bad("sources", "must be a mapping of source name to settings");
    for (const auto& kv : s) {
      auto name = kv.first.as<std::string>();
      c.sources[name] = parse_source(name, kv.second, "sources." + name, env);
    }
  }
  if (auto t = root["api_tokens"]) {
    c.api_tokens = strings(t, "api_tokens", env, Secret::kYes);
    for (std::size_t i = 0; i < c.api_tokens.size(); ++i) {
      if (c.api_tokens[i].size() < 16)
        bad("api_tokens[" + std::to_string(i) + "]", "must be at least 16 characters");
    }
  }
  // Before the routes: a route's retry policy starts from the global one.
  if (auto r = root["retry"]) parse_retry(r, "retry", c.retry, 7 * 86400);
  if (auto a = root["admin"]) parse_admin(a, c.admin, env);
  if (auto r = root["routes"]) {
    if (!r.IsMap()) bad("routes", "must be a mapping of source name to a list of routes");
    for (const auto& kv : r) {
      auto source = kv.first.as<std::string>();
      std::string field = "routes." + source;
      if (!c.sources.count(source)) bad(field, "names no configured source");
      if (!kv.second.IsSequence()) bad(field, "must be a list of routes");
      std::set<std::string> names;
      for (std::size_t i = 0; i < kv.second.size(); ++i) {
        auto route = parse_route(kv.second[i], field + "[" + std::to_string(i) + "]", env, c.retry);
        if (!names.insert(route.name).second)
          bad(field + "[" + std::to_string(i) + "].name",
              "duplicate route name '" + route.name + "'");
        c.routes[source].push_back(std::move(route));
      }
    }
  }
  if (auto p = root["postgres"]) {
    only_keys(p, "postgres", {"url"});
    // The URL may hold the database password.
    if (p["url"]) c.postgres.url = str(p["url"], "postgres.url", env, Secret::kYes);
  }
  if (auto w = root["worker"]) {
    only_keys(w, "worker",
              {"listen",
               "group_id",
               "worker_id",
               "group_instance_id",
               "static_membership",
               "allow_private_networks",
               "allowed_cidrs",
               "max_in_flight",
               "batch_size",
               "connect_timeout_ms",
               "per_host_max_in_flight",
               "per_host_rate_per_second",
               "http_threads",
               "breaker_failure_threshold",
               "breaker_cooldown_ms",
               "shutdown_grace_ms",
               "host_states",
               "claim_lease_seconds",
               "statement_timeout_ms",
               "adaptive_limit",
               "store_batching"});
    auto& wc = c.worker;
    if (w["listen"]) wc.listen = str(w["listen"], "worker.listen", env);
    if (w["group_id"]) wc.group_id = str(w["group_id"], "worker.group_id", env);
    if (w["worker_id"]) wc.worker_id = str(w["worker_id"], "worker.worker_id", env);
    parse_static_membership(w, wc, env);
    if (w["allow_private_networks"])
      wc.allow_private_networks =
          boolean(w["allow_private_networks"], "worker.allow_private_networks");
    if (w["allowed_cidrs"]) {
      const auto texts = strings(w["allowed_cidrs"], "worker.allowed_cidrs", env);
      for (std::size_t i = 0; i < texts.size(); ++i) {
        auto cidr = parse_cidr(texts[i]);
        if (!cidr) bad("worker.allowed_cidrs[" + std::to_string(i) + "]", cidr.error().message);
        wc.allowed_cidrs.push_back(*cidr);
      }
    }
    if (w["max_in_flight"])
      wc.max_in_flight = num<int>(w["max_in_flight"], "worker.max_in_flight", 1, 1000000);
    if (w["batch_size"]) wc.batch_size = num<int>(w["batch_size"], "worker.batch_size", 1, 10000);
    if (w["connect_timeout_ms"])
      wc.connect_timeout_ms =
          num<int>(w["connect_timeout_ms"], "worker.connect_timeout_ms", 10, 600000);
    if (w["per_host_max_in_flight"])
      wc.per_host_max_in_flight =
          num<int>(w["per_host_max_in_flight"], "worker.per_host_max_in_flight", 1, 100000);
    if (w["http_threads"])
      wc.http_threads = num<int>(w["http_threads"], "worker.http_threads", 1, 64);
    if (w["per_host_rate_per_second"])
      wc.per_host_rate_per_second =
          call_rate(w["per_host_rate_per_second"], "worker.per_host_rate_per_second");
    if (w["breaker_failure_threshold"])
      wc.breaker_failure_threshold =
          num<int>(w["breaker_failure_threshold"], "worker.breaker_failure_threshold", 1, 100000);
    if (w["breaker_cooldown_ms"])
      wc.breaker_cooldown_ms =
          num<int>(w["breaker_cooldown_ms"], "worker.breaker_cooldown_ms", 10, 3600000);
    if (w["shutdown_grace_ms"])
      wc.shutdown_grace_ms =
          num<int>(w["shutdown_grace_ms"], "worker.shutdown_grace_ms", 0, 600000);
    if (auto h = w["host_states"]) parse_host_states(h, "worker.host_states", wc.host_states);
    if (w["claim_lease_seconds"])
      wc.claim_lease_seconds =
          num<int>(w["claim_lease_seconds"], "worker.claim_lease_seconds", 1, 86400);
    if (w["statement_timeout_ms"])
      wc.statement_timeout_ms =
          num<int>(w["statement_timeout_ms"], "worker.statement_timeout_ms", 0, 3600000);
    if (auto a = w["adaptive_limit"])
      parse_adaptive_limit(a, "worker.adaptive_limit", wc.adaptive_limit);
    if (auto b = w["store_batching"])
      parse_store_batching(b, "worker.store_batching", wc.store_batching);
  }
  if (root["log_level"]) {
    c.log_level = str(root["log_level"], "log_level", env);
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error"};
    if (!levels.count(c.log_level)) bad("log_level", "must be trace, debug, info, warn or error");
  }

  // Overrides for addresses, so one file serves every environment.
  if (auto v = env("HOOKRELAY_KAFKA_BOOTSTRAP")) c.kafka.bootstrap_servers = *v;
  if (auto v = env("HOOKRELAY_INGEST_LISTEN")) c.ingest.listen = *v;
  if (auto v = env("HOOKRELAY_INGEST_METRICS_LISTEN")) c.ingest.metrics_listen = *v;
  if (auto v = env("HOOKRELAY_WORKER_LISTEN")) c.worker.listen = *v;
  if (auto v = env("HOOKRELAY_DATABASE_URL")) c.postgres.url = *v;
  if (auto v = env("HOOKRELAY_ADMIN_LISTEN")) c.admin.listen = *v;

  if (c.kafka.bootstrap_servers.empty()) bad("kafka.bootstrap_servers", "must not be empty");
  check_guarantees(c);
  if (c.topics.max_message_bytes != 0 &&
      c.topics.max_message_bytes < static_cast<int64_t>(kafka_message_max_bytes(c.kafka))) {
    bad("topics.max_message_bytes", "must be at least the producer's message.max.bytes (" +
                                        std::to_string(kafka_message_max_bytes(c.kafka)) +
                                        "), got " + std::to_string(c.topics.max_message_bytes) +
                                        ": the broker would refuse what ingest accepted");
  }
  const HostPort ingest_listen = check_listen(c.ingest.listen, "ingest.listen");
  if (!c.ingest.metrics_listen.empty()) {
    const HostPort metrics = check_listen(c.ingest.metrics_listen, "ingest.metrics_listen");
    if (share_a_port(metrics, ingest_listen)) {
      bad("ingest.metrics_listen",
          "must differ from ingest.listen (" + c.ingest.listen +
              "): it is the listener that keeps /metrics off the public one, and on the same "
              "port (the same address, or a wildcard 0.0.0.0 or :: on either) the two would "
              "share the port's connections");
    }
  }
  check_listen(c.worker.listen, "worker.listen");
  check_listen(c.admin.listen, "admin.listen");
  return c;
}

// A key given twice in one mapping is refused, wherever it is: yaml-cpp keeps both, a lookup finds
// the first and a walk over the mapping sees both, so `routes: {gh: [...], gh: [...]}` would make
// two routes of one name (one delivery key for both: one of them never gets an event) and a second
// `worker:` section would be ignored without a word.
// `budget` bounds the nodes visited: aliases share nodes, so a short document can name billions.
void refuse_repeated_keys(const YAML::Node& node, const std::string& field, int depth,
                          long& budget) {
  if (--budget < 0) bad("(top level)", "more than 1000000 YAML nodes, aliases counted");
  if (depth > 32) return;  // deeper than any valid config: its shape is refused by parse()
  if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i)
      refuse_repeated_keys(node[i], field + "[" + std::to_string(i) + "]", depth + 1, budget);
    return;
  }
  if (!node.IsMap()) return;
  std::set<std::string> seen;
  const std::string where = field.empty() ? "(top level)" : field;
  for (const auto& kv : node) {
    // Every key of a config is a name. A null key (~, null, or none) would read as "null" and a
    // list or mapping as nothing at all.
    if (kv.first.IsSequence() || kv.first.IsMap())
      bad(where, "has a list or mapping as a key; keys are names");
    if (!kv.first.IsScalar())
      bad(where, "has a null key (~ or null); keys are names (quote \"null\" to mean the word)");
    auto key = kv.first.as<std::string>();
    const std::string path = join(field, key);
    if (!seen.insert(key).second) bad(path, "given twice in one mapping");
    refuse_repeated_keys(kv.second, path, depth + 1, budget);
  }
}

}  // namespace

const char* scheme_name(SchemeKind kind) {
  switch (kind) {
    case SchemeKind::kStandardWebhooks:
      return "standard-webhooks";
    case SchemeKind::kGithub:
      return "github";
    case SchemeKind::kStripe:
      return "stripe";
    case SchemeKind::kSlack:
      return "slack";
    case SchemeKind::kShopify:
      return "shopify";
    case SchemeKind::kHmac:
      return "hmac";
  }
  return "unknown";
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Result<HostPort> parse_host_port(const std::string& text, const std::string& field) {
  HostPort hp;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fail("config", field + ": expected [ipv6]:port, got '" + text + "'");
    }
    hp.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return fail("config", field + ": expected host:port, got '" + text + "'");
    hp.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return fail("config", field + ": port must be a number, got '" + port + "'");
  }
  long p = std::stol(port);
  if (p > 65535) return fail("config", field + ": port must be 0-65535, got " + port);
  hp.port = static_cast<uint16_t>(p);
  // The host is bound as given (HttpServer), never resolved: a name would pass here and then
  // stop the service at start.
  boost::system::error_code ec;
  boost::asio::ip::make_address(hp.host, ec);
  if (ec) {
    return fail("config", field +
                              ": host must be an IP address (such as 127.0.0.1, 0.0.0.0 or "
                              "[::1]), not a name, got '" +
                              hp.host + "'");
  }
  return hp;
}

std::size_t kafka_message_max_bytes(const KafkaConfig& kafka) {
  const auto producer = kafka.producer_map();
  auto it = producer.find("message.max.bytes");
  if (it == producer.end()) return kDefaultKafkaMessageMaxBytes;
  std::size_t v = 0;
  const auto& text = it->second;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  // librdkafka refuses a malformed value when the producer is built; until then, the default.
  if (ec != std::errc() || ptr != text.data() + text.size()) return kDefaultKafkaMessageMaxBytes;
  return v;
}

int64_t topic_max_message_bytes(const Config& config) {
  if (config.topics.max_message_bytes > 0) return config.topics.max_message_bytes;
  return static_cast<int64_t>(kafka_message_max_bytes(config.kafka)) + kTopicBatchOverheadBytes;
}

std::vector<std::string> config_warnings(const Config& config) {
  std::vector<std::string> out;
  const std::size_t kafka_max = kafka_message_max_bytes(config.kafka);
  if (config.ingest.max_body_bytes + kKafkaHeaderAllowance > kafka_max) {
    out.push_back("ingest.max_body_bytes (" + std::to_string(config.ingest.max_body_bytes) +
                  ") plus " + std::to_string(kKafkaHeaderAllowance) +
                  " bytes for headers exceeds the Kafka producer's message.max.bytes (" +
                  std::to_string(kafka_max) +
                  "): bodies near the limit will be refused with 413 body_too_large; lower "
                  "ingest.max_body_bytes "
                  "or raise message.max.bytes in kafka.producer_properties (and the topics' "
                  "max.message.bytes)");
  }
  // A copy of a message can be consumed again for as long as its topic keeps it (and Kafka deletes
  // a segment only once all of it is past retention: up to segment.ms, 7 days, more). A delivery
  // row deleted by hookrelay_delete_finished_deliveries before then forgets its key, and such a
  // copy would be delivered again. The shipped CronJob deletes after 45 days.
  {
    constexpr int64_t kDayMs = 24LL * 3600 * 1000;
    constexpr int64_t kCronJobWindowMs = 45 * kDayMs;
    constexpr int64_t kSegmentMs = 7 * kDayMs;
    std::string longest_field = "topics.retention_ms";
    int64_t longest = config.topics.retention_ms;
    if (config.topics.dlq_retention_ms > longest) {
      longest = config.topics.dlq_retention_ms;
      longest_field = "topics.dlq_retention_ms";
    }
    for (int seconds : config.retry.schedule_seconds) {
      // Each retry tier is kept ten times its delay (shared/kafka/topic_plan.cpp).
      if (10 * int64_t{seconds} * 1000 > longest) {
        longest = 10 * int64_t{seconds} * 1000;
        longest_field = "retry.schedule_seconds (a tier is kept ten times its delay)";
      }
    }
    if (longest + kSegmentMs > kCronJobWindowMs) {
      out.push_back(longest_field + " keeps messages " + std::to_string(longest / kDayMs) +
                    " days: a copy read again within that (and up to 7 days more, a segment) "
                    "must still find its delivery's row, so call "
                    "hookrelay_delete_finished_deliveries with older_than above " +
                    std::to_string((longest + kSegmentMs + kDayMs - 1) / kDayMs) +
                    " days (the shipped CronJob uses 45), or such a copy is delivered again");
    }
  }
  for (const auto& [source, routes] : config.routes) {
    for (std::size_t i = 0; i < routes.size(); ++i) {
      const RouteConfig& r = routes[i];
      const std::string field = "routes." + source + "[" + std::to_string(i) + "]";
      // The worker's lease_window: a call, a time to start it and the record of its result
      // must fit in the lease, or the call's timeout is cut.
      const auto window =
          lease_window(int64_t{config.worker.claim_lease_seconds} * 1000, r.timeout_ms);
      if (window.timeout_ms < r.timeout_ms) {
        out.push_back(field + ".timeout_ms (" + std::to_string(r.timeout_ms) +
                      ") with time to start the call and record its result does not fit in "
                      "worker.claim_lease_seconds (" +
                      std::to_string(config.worker.claim_lease_seconds) +
                      " s): its calls are cut to " + std::to_string(window.timeout_ms) +
                      " ms (a call must end before its claim's lease, or another worker may "
                      "make the same attempt); raise worker.claim_lease_seconds");
      }
      if (r.max_in_flight > config.worker.per_host_max_in_flight) {
        out.push_back(field + ".max_in_flight (" + std::to_string(r.max_in_flight) +
                      ") is above worker.per_host_max_in_flight (" +
                      std::to_string(config.worker.per_host_max_in_flight) +
                      "): the per-host limit binds first");
      }
    }
  }
  return out;
}

const RouteConfig* route_config(const Config& config, std::string_view source,
                                std::string_view name) {
  auto routes = config.routes.find(std::string(source));
  if (routes == config.routes.end()) return nullptr;
  for (const auto& r : routes->second) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

namespace {

// Where each document of a YAML stream starts, and whether it holds anything but a null.
class DocumentMarks final : public YAML::EventHandler {
 public:
  YAML::Mark start;
  bool content = false;
  void OnDocumentStart(const YAML::Mark& mark) override {
    start = mark;
    content = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { content = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    content = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content = true;
  }
  void OnMapEnd() override {}
};

// A configuration is one YAML document: YAML::Load reads the first and would drop the rest
// without a word (routes after a `---` would vanish). The stream is walked here rather than with
// YAML::LoadAll, which never returns on some malformed input: yaml-cpp 0.7 hands out a document
// it cannot start (a leading ',') again and again without moving on. A walk that does not move is
// refused, as is a second document with anything in it (an empty one after a final `---` is
// nothing).
void refuse_other_documents(const std::string& yaml_text) {
  std::istringstream in(yaml_text);
  YAML::Parser parser(in);
  DocumentMarks marks;
  int last_start = -1;
  int with_content = 0;
  while (parser.HandleNextDocument(marks)) {
    if (marks.start.pos <= last_start) {
      bad("(top level)", "not YAML that can be read: no document starts at line " +
                             std::to_string(marks.start.line + 1) + ", column " +
                             std::to_string(marks.start.column + 1));
    }
    last_start = marks.start.pos;
    if (marks.content && ++with_content > 1) {
      bad("(top level)",
          "the configuration has more than one YAML document (a second starts at "
          "line " +
              std::to_string(marks.start.line + 1) + ", after '---'); put everything in one");
    }
  }
}

}  // namespace

Result<Config> parse_config(const std::string& yaml_text, const EnvLookup& env) {
  try {
    refuse_other_documents(yaml_text);
    YAML::Node root = YAML::Load(yaml_text);
    long budget = 1000000;
    refuse_repeated_keys(root, "", 0, budget);
    return parse(root, env);
  } catch (const ConfigError& e) {
    return fail("config", e.message);
  } catch (const YAML::Exception& e) {
    return fail("config", std::string("YAML syntax: ") + e.what());
  }
}

Result<Config> load_config_file(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("config", "cannot read config file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), env);
}

}  // namespace hookrelay
