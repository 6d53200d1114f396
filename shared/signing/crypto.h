// Crypto helpers over OpenSSL 3: HMAC, SHA-256, hex/base64 codecs, constant-time comparison and
// random bytes. All inputs and outputs are byte strings held in std::string; "raw" means the
// digest bytes, not an encoding of them. Decoders are strict and return nullopt on any input a
// canonical encoder would not have produced, because their inputs come from the network.
//
// Thread-safety: every function may be called from any thread concurrently.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace hookrelay {

enum class HmacAlgorithm { kSha1, kSha256, kSha512 };

// Digest length in bytes (20, 32, 64).
std::size_t hmac_size(HmacAlgorithm alg);

// Raw HMAC of `data` under `key`. An empty key is allowed.
std::string hmac(HmacAlgorithm alg, std::string_view key, std::string_view data);

// Raw HMAC of the concatenation of `parts`, without building the concatenation: signature
// schemes prefix a short header to a body of up to megabytes.
std::string hmac_parts(HmacAlgorithm alg, std::string_view key,
                       std::initializer_list<std::string_view> parts);

// Raw SHA-256.
std::string sha256(std::string_view data);

// Lowercase hex.
std::string hex_encode(std::string_view bytes);
// Accepts upper- and lowercase digits; odd length or any other character yields nullopt.
std::optional<std::string> hex_decode(std::string_view hex);

// Standard alphabet (RFC 4648 section 4) with '=' padding.
std::string base64_encode(std::string_view bytes);
// Requires padding to a multiple of 4, only alphabet characters before the padding, and zero
// unused bits in the last group; no whitespace. Anything else yields nullopt.
std::optional<std::string> base64_decode(std::string_view text);

// True when equal. Content is compared in time independent of where the bytes differ; a length
// mismatch returns false at once (lengths of signatures are public).
bool constant_time_equal(std::string_view a, std::string_view b);

// `n` bytes from the OpenSSL CSPRNG. Aborts if the generator fails: nothing may continue with
// predictable randomness.
std::string random_bytes(std::size_t n);

}  // namespace hookrelay
