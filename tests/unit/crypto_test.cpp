#include "shared/signing/crypto.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace hookrelay {
namespace {

std::string hex_hmac(HmacAlgorithm alg, std::string_view key, std::string_view data) {
  return hex_encode(hmac(alg, key, data));
}

// RFC 4231 section 4.2, test case 1.
TEST(Crypto, HmacSha256Rfc4231Case1) {
  EXPECT_EQ(hex_hmac(HmacAlgorithm::kSha256, std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

// RFC 4231 section 4.3, test case 2 (key shorter than the block), all three digests.
TEST(Crypto, HmacRfc4231Case2AndRfc2202Sha1) {
  EXPECT_EQ(hex_hmac(HmacAlgorithm::kSha256, "Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hex_hmac(HmacAlgorithm::kSha512, "Jefe", "what do ya want for nothing?"),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
  EXPECT_EQ(hex_hmac(HmacAlgorithm::kSha1, "Jefe", "what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

// RFC 4231 test case 6: a key longer than the block size is hashed first.
TEST(Crypto, HmacSha256LongKey) {
  EXPECT_EQ(hex_hmac(HmacAlgorithm::kSha256, std::string(131, '\xaa'),
                     "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(Crypto, HmacPartsEqualsHmacOfConcatenationAndEmptyKeyWorks) {
  EXPECT_EQ(hmac_parts(HmacAlgorithm::kSha256, "k", {"abc.", "", "body"}),
            hmac(HmacAlgorithm::kSha256, "k", "abc.body"));
  // An empty key must not mean "reuse the previous key".
  EXPECT_EQ(hex_hmac(HmacAlgorithm::kSha256, "", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_EQ(hmac_size(HmacAlgorithm::kSha1), 20u);
  EXPECT_EQ(hmac_size(HmacAlgorithm::kSha512), 64u);
}

// Keyed contexts are reused per thread: each answer must still be that of its own key and
// algorithm whatever was computed before it, with more keys in turn than are kept, the same key
// under three algorithms, an empty key, and on several threads at once.
TEST(Crypto, HmacKeysInTurnEachGiveTheirOwnDigest) {
  struct Case {
    HmacAlgorithm alg;
    std::string key;
    std::string data;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {HmacAlgorithm::kSha256, std::string(20, '\x0b'), "Hi There",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {HmacAlgorithm::kSha256, "Jefe", "what do ya want for nothing?",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {HmacAlgorithm::kSha1, "Jefe", "what do ya want for nothing?",
       "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
      {HmacAlgorithm::kSha512, "Jefe", "what do ya want for nothing?",
       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
       "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
      {HmacAlgorithm::kSha256, "", "",
       "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
      {HmacAlgorithm::kSha256, std::string(131, '\xaa'),
       "Test Using Larger Than Block-Size Key - Hash Key First",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
  };
  auto run = [&cases] {
    int wrong = 0;
    for (int round = 0; round < 50; ++round) {
      for (std::size_t i = 0; i < cases.size(); ++i) {
        // Forwards, then backwards, then one key again and again.
        const Case& c = cases[round % 3 == 0 ? i : round % 3 == 1 ? cases.size() - 1 - i : 1];
        wrong += hex_hmac(c.alg, c.key, c.data) != c.expected;
      }
    }
    return wrong;
  };
  EXPECT_EQ(run(), 0);
  std::vector<int> wrong(4, -1);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < wrong.size(); ++t) threads.emplace_back([&, t] { wrong[t] = run(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong, std::vector<int>(4, 0));
}

TEST(Crypto, Sha256KnownValues) {
  EXPECT_EQ(hex_encode(sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_encode(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, HexRoundTripAndStrictness) {
  const std::string all = [] {
    std::string s;
    for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
    return s;
  }();
  EXPECT_EQ(hex_decode(hex_encode(all)), all);
  EXPECT_EQ(hex_encode("\x01\xab\xff"), "01abff");
  EXPECT_EQ(hex_decode("01ABff"), std::string("\x01\xab\xff"));
  EXPECT_EQ(hex_decode(""), std::string());
  EXPECT_FALSE(hex_decode("abc"));   // odd length
  EXPECT_FALSE(hex_decode("zz"));    // not hex
  EXPECT_FALSE(hex_decode("0x12"));  // no prefixes
  EXPECT_FALSE(hex_decode(" 12"));   // no whitespace
}

// RFC 4648 section 10.
TEST(Crypto, Base64Rfc4648Vectors) {
  const std::pair<const char*, const char*> cases[] = {{"", ""},
                                                       {"f", "Zg=="},
                                                       {"fo", "Zm8="},
                                                       {"foo", "Zm9v"},
                                                       {"foob", "Zm9vYg=="},
                                                       {"fooba", "Zm9vYmE="},
                                                       {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), std::string(plain)) << encoded;
  }
  EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(base64_decode("+/8="), std::string("\xfb\xff"));
}

TEST(Crypto, Base64RejectsAnythingNonCanonical) {
  for (const char* bad : {"Zg", "Zg=", "Zm9", "Z===", "====", "Zg==Zg==", "Zm=v", "Zm9v\n", " Zm9v",
                          "Zm9-", "Zm9_", "Zh==", "Zm9=", "Zm8*"}) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
}

TEST(Crypto, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(constant_time_equal("abc", ""));
}

TEST(Crypto, RandomBytesHaveTheLengthAndDiffer) {
  EXPECT_EQ(random_bytes(0), "");
  const std::string a = random_bytes(32);
  const std::string b = random_bytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);  // 2^-256 chance of a false failure
}

}  // namespace
}  // namespace hookrelay
