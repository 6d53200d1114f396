#include "shared/signing/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace hookrelay {
namespace {

struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;

// A failing OpenSSL call here means a broken installation or memory exhaustion, never bad
// input: there is no sensible result to return, so stop loudly.
[[noreturn]] void crypto_failure(const char* what) {
  std::fprintf(stderr, "fatal: OpenSSL %s failed\n", what);
  std::abort();
}

// Fetched once: EVP_MAC objects are reference counted and safe to share between threads, and
// fetching per call costs a provider lookup. Deliberately never freed (process lifetime).
EVP_MAC* hmac_mac() {
  static EVP_MAC* const mac = [] {
    EVP_MAC* m = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    if (m == nullptr) crypto_failure("EVP_MAC_fetch(HMAC)");
    return m;
  }();
  return mac;
}

// The same for SHA-256: EVP_sha256() is fetched implicitly on every digest, and that lookup cost
// as much as hashing a 1 KiB body (worker profile: EVP_MD_fetch beside SHA256_Update).
const EVP_MD* sha256_md() {
  static EVP_MD* const md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, OSSL_DIGEST_NAME_SHA2_256, nullptr);
    if (m == nullptr) crypto_failure("EVP_MD_fetch(SHA2-256)");
    return m;
  }();
  return md;
}

const char* digest_name(HmacAlgorithm alg) {
  switch (alg) {
    case HmacAlgorithm::kSha1:
      return OSSL_DIGEST_NAME_SHA1;
    case HmacAlgorithm::kSha256:
      return OSSL_DIGEST_NAME_SHA2_256;
    case HmacAlgorithm::kSha512:
      return OSSL_DIGEST_NAME_SHA2_512;
  }
  std::abort();  // unreachable: every enumerator is handled above
}

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 255 marks a byte outside the alphabet.
constexpr std::array<uint8_t, 256> make_base64_table() {
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = 255;
  for (uint8_t i = 0; i < 64; ++i) t[static_cast<uint8_t>(kBase64Alphabet[i])] = i;
  return t;
}
constexpr std::array<uint8_t, 256> kBase64Table = make_base64_table();

}  // namespace

std::size_t hmac_size(HmacAlgorithm alg) {
  switch (alg) {
    case HmacAlgorithm::kSha1:
      return 20;
    case HmacAlgorithm::kSha256:
      return 32;
    case HmacAlgorithm::kSha512:
      return 64;
  }
  std::abort();  // unreachable: every enumerator is handled above
}

namespace {

// A few keyed HMAC contexts per thread, kept for the keys in use (a source's secrets, request
// after request). A reused context is reset with EVP_MAC_init(ctx, NULL key): OpenSSL restores
// the pads it computed from the key, where a fresh context cost an allocation, a digest lookup
// by name under the provider lock, and hashing the key into both pads.
class KeyedMacs {
 public:
  EVP_MAC_CTX* get(HmacAlgorithm alg, std::string_view key) {
    for (Entry& e : entries_) {
      if (e.ctx && e.alg == alg && e.key == key) {
        if (EVP_MAC_init(e.ctx.get(), nullptr, 0, nullptr) != 1) crypto_failure("EVP_MAC_init");
        return e.ctx.get();
      }
    }
    Entry& e = entries_[next_];
    next_ = (next_ + 1) % entries_.size();
    if (!e.ctx) e.ctx.reset(EVP_MAC_CTX_new(hmac_mac()));
    if (!e.ctx) crypto_failure("EVP_MAC_CTX_new");
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                            const_cast<char*>(digest_name(alg)), 0),
                           OSSL_PARAM_construct_end()};
    // A null key pointer means "reuse the previous key" to OpenSSL, so an empty key still needs
    // a valid address.
    static const unsigned char kEmpty = 0;
    const auto* key_bytes =
        key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_MAC_init(e.ctx.get(), key_bytes, key.size(), params) != 1)
      crypto_failure("EVP_MAC_init");
    if (!e.key.empty()) OPENSSL_cleanse(e.key.data(), e.key.size());
    e.key.assign(key);
    e.alg = alg;
    return e.ctx.get();
  }

  ~KeyedMacs() {
    for (Entry& e : entries_) {
      if (!e.key.empty()) OPENSSL_cleanse(e.key.data(), e.key.size());
    }
  }

 private:
  struct Entry {
    HmacAlgorithm alg = HmacAlgorithm::kSha256;
    std::string key;
    MacCtxPtr ctx;
  };
  std::array<Entry, 4> entries_;
  std::size_t next_ = 0;
};

}  // namespace

std::string hmac_parts(HmacAlgorithm alg, std::string_view key,
                       std::initializer_list<std::string_view> parts) {
  thread_local KeyedMacs macs;
  EVP_MAC_CTX* ctx = macs.get(alg, key);
  for (std::string_view part : parts) {
    if (part.empty()) continue;
    if (EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(part.data()), part.size()) !=
        1) {
      crypto_failure("EVP_MAC_update");
    }
  }
  std::string out(hmac_size(alg), '\0');
  std::size_t len = 0;
  if (EVP_MAC_final(ctx, reinterpret_cast<unsigned char*>(out.data()), &len, out.size()) != 1 ||
      len != out.size()) {
    crypto_failure("EVP_MAC_final");
  }
  return out;
}

std::string hmac(HmacAlgorithm alg, std::string_view key, std::string_view data) {
  return hmac_parts(alg, key, {data});
}

std::string sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 sha256_md(), nullptr) != 1 ||
      len != out.size()) {
    crypto_failure("EVP_Digest(SHA-256)");
  }
  return out;
}

std::string hex_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    out.push_back(kHexDigits[b >> 4]);
    out.push_back(kHexDigits[b & 0x0f]);
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_value(hex[i]);
    const int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto at = [&](std::size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(kBase64Alphabet[(v >> 6) & 63]);
    out.push_back(kBase64Alphabet[v & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const uint32_t v = at(i) << 16;
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (rest == 2) {
    const uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(kBase64Alphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  const std::size_t data_chars = text.size() - padding;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < data_chars; ++i) {
    const uint8_t v = kBase64Table[static_cast<uint8_t>(text[i])];
    if (v == 255) return std::nullopt;  // includes a '=' before the final padding
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, or two different texts would decode to the same bytes.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (n == 0) return out;
  // RAND_bytes takes an int; fill in chunks so a huge request cannot overflow it.
  constexpr std::size_t kChunk = 1 << 20;
  for (std::size_t off = 0; off < n; off += kChunk) {
    const std::size_t len = n - off < kChunk ? n - off : kChunk;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data() + off), static_cast<int>(len)) !=
        1) {
      crypto_failure("RAND_bytes");
    }
  }
  return out;
}

}  // namespace hookrelay
