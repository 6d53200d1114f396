// Command-line parsing for the `hookrelay` CLI: long options ("--rate 5/s" or "--rate=5/s"),
// switches ("--dry-run"), repeatable options ("--id A --id B"), positionals, "--" to end options,
// "-" as a positional (stdin), and "-h" as "--help". Also the value parsers the commands share
// (times, rates, counts), so every command reads "2h" or "10/s" the same way.
//
// Errors are Error{"usage", ...} naming the argument; the caller prints them with the command's
// usage and exits 2.
//
// Thread-safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.h"

namespace hookrelay::cli {

struct OptionSpec {
  std::string name;          // "--rate"
  bool takes_value = false;  // false: a switch
  bool non_empty = false;    // an empty value ("--config ''", "--config=") is an error
};

class ParsedArgs {
 public:
  bool has(std::string_view name) const;
  // The last value given for `name`, if any.
  std::optional<std::string> value(std::string_view name) const;
  std::string value_or(std::string_view name, std::string fallback) const;
  // Every value given for a repeatable option, in order.
  std::vector<std::string> values(std::string_view name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  friend Result<ParsedArgs> parse_args(const std::vector<std::string>& args,
                                       const std::vector<OptionSpec>& options);
  std::map<std::string, std::vector<std::string>, std::less<>> options_;
  std::vector<std::string> positionals_;
};

// "--help" is always accepted. Unknown options and missing values are errors; a value given as
// the next argument must not start with "--" (that is the next option: "--reason --dry-run" is
// an error), while "--reason=--dry-run" gives such a value. An option marked non_empty refuses
// an empty value: "--config: must not be empty".
Result<ParsedArgs> parse_args(const std::vector<std::string>& args,
                              const std::vector<OptionSpec>& options);

// A point in time, in Unix ms: "2024-05-01T12:00:00Z" (optional ".mmm", "+02:00" offsets),
// "2024-05-01" (midnight UTC), a duration ago ("90s", "15m", "2h", "7d"; at most 3650 days), or
// "now". A date that does not exist (2024-02-30) is an error.
Result<int64_t> parse_time_arg(std::string_view text, int64_t now_ms, std::string_view field);

// A duration in ms: "90s", "15m", "2h", "7d"; at most 3650 days.
Result<int64_t> parse_duration_arg(std::string_view text, std::string_view field);

// "10/s", "10", "0.5/s", "600/m" -> messages per second; must be positive.
Result<double> parse_rate_arg(std::string_view text, std::string_view field);

// A whole number within [min, max].
Result<int64_t> parse_int_arg(std::string_view text, int64_t min, int64_t max,
                              std::string_view field);

}  // namespace hookrelay::cli
