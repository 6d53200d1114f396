#!/usr/bin/env python3
"""Writes the committed seed corpora of tests/fuzz/corpus/<harness>/ (run from anywhere).

Seeds are small and meaningful: valid requests and messages of every kind, near-misses, and the
hostile inputs of issue 14. Signatures are computed here for the fixed clock and secrets of
fuzz_support.h, so signed seeds pass verification. Rerunning rewrites the same files.
"""
import base64
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
NOW_S = 1_700_000_000
NOW_MS = NOW_S * 1000
TOKEN = "tok_0123456789abcdef"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def write(harness, seeds):
    d = os.path.join(HERE, "corpus", harness)
    # The seeds written here are replaced; inputs kept from crashes (regression-*) stay.
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if not name.startswith("regression-"):
            os.remove(os.path.join(d, name))
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def hexmac(key, msg, alg=hashlib.sha256):
    return hmac.new(key.encode(), msg, alg).hexdigest()


def b64mac(key, msg, alg=hashlib.sha256):
    return base64.b64encode(hmac.new(key.encode(), msg, alg).digest()).decode()


def signed_headers(source, body):
    """Headers the provider of `source` (fuzz_support.h) sends for `body` at NOW_S."""
    ts = str(NOW_S)
    if source == "github":
        return {"X-Hub-Signature-256": "sha256=" + hexmac("It's a Secret to Everybody", body),
                "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-GitHub-Event": "push"}
    if source == "stripe":
        return {"Stripe-Signature": f"t={ts},v1=" + hexmac("whsec_new", ts.encode() + b"." + body)}
    if source == "acme":
        key = base64.b64decode(WHSEC[len("whsec_"):])
        sig = base64.b64encode(hmac.new(key, b"msg_1." + ts.encode() + b"." + body, hashlib.sha256).digest())
        return {"webhook-id": "msg_1", "webhook-timestamp": ts, "webhook-signature": "v1," + sig.decode()}
    if source == "slack":
        return {"X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": "v0=" + hexmac("slacksecret", b"v0:" + ts.encode() + b":" + body)}
    if source == "shop":
        return {"X-Shopify-Hmac-Sha256": b64mac("shopsecret", body), "X-Shopify-Webhook-Id": "shop-evt-1"}
    if source == "custom":
        return {"X-Timestamp": ts, "X-Event-Id": "cust-1",
                "X-Signature": "sha256=" + hexmac("c", ts.encode() + b"." + body)}
    if source == "b64":
        return {"X-Sig": b64mac("b", body, hashlib.sha1)}
    raise KeyError(source)


BODIES = {
    "github": b'{"action":"opened","number":1}',
    "stripe": b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"charge.succeeded"}',
    "acme": b'{"type":"user.created","data":{"id":"u_1"}}',
    "slack": b'{"event_id":"Ev08MFMKH6","type":"event_callback"}',
    "shop": b'{"id":820982911946154508}',
    "custom": b"plain text body \x00\xff",
    "b64": b"",
}

CALL = {"url": "https://api.example.com/v1/charge?x=1", "method": "POST",
        "headers": {"Content-Type": "application/json", "X-Trace": "abc"},
        "body": '{"amount":100}', "idempotency_key": "order-42", "timeout_ms": 5000,
        "max_attempts": 5, "max_age_seconds": 3600}

CALL_BODIES = {
    "call_full": json.dumps(CALL),
    "call_min": json.dumps({"url": "http://example.com/"}),
    "call_b64": json.dumps({"url": "https://example.com/x", "method": "PUT", "body_base64": "AP8Q"}),
    "call_get": json.dumps({"url": "https://example.com/x", "method": "GET", "headers": {}}),
    "call_bad_scheme": json.dumps({"url": "ftp://example.com/"}),
    "call_creds": json.dumps({"url": "https://user:pw@example.com/"}),
    "call_crlf": json.dumps({"url": "https://example.com/", "headers": {"X-A": "a\r\nInjected: 1"}}),
    "call_host": json.dumps({"url": "https://example.com/", "headers": {"Host": "evil"}}),
    "call_huge_num": '{"url":"https://example.com/","timeout_ms":1e300}',
    "call_neg": '{"url":"https://example.com/","max_attempts":-1,"max_age_seconds":0}',
    "call_both_bodies": '{"url":"https://example.com/","body":"a","body_base64":"YQ=="}',
    "call_unknown_key": '{"url":"https://example.com/","nope":1}',
    "call_triple_slash": '{"url":"https:///example.com/x"}',
    "call_not_object": '["https://example.com/"]',
    "call_nested": "[" * 200 + "]" * 200,
    "call_bad_json": '{"url": "https://example.com/",',
}


def envelope(**over):
    e = {"url": "https://api.example.com/hook", "method": "POST", "headers": [["X-A", "1"]],
         "idempotency_key": "k1", "timeout_ms": 10000, "max_attempts": 8, "max_age_seconds": 86400}
    e.update(over)
    return json.dumps(e, separators=(",", ":"))


def ingest_seeds():
    seeds = {}
    for source, body in BODIES.items():
        # '+': the harness signs (mutations keep reaching past verification)...
        seeds[f"autosign_{source}"] = b"+POST\n/webhooks/" + source.encode() + \
            b"\nContent-Type: application/json\nX-Custom: v\n\n" + body
        # ...and the same request signed here, byte for byte what a provider sends.
        head = "".join(f"{k}: {v}\n" for k, v in signed_headers(source, body).items())
        seeds[f"signed_{source}"] = f"POST\n/webhooks/{source}\n{head}\n".encode() + body
    seeds["unsigned_github"] = b"POST\n/webhooks/github\nX-Hub-Signature-256: sha256=00\n\n{}"
    seeds["stale_stripe"] = b"POST\n/webhooks/stripe\nStripe-Signature: t=1,v1=" + b"0" * 64 + b"\n\n{}"
    seeds["unknown_source"] = b"POST\n/webhooks/nosuchsource\n\n{}"
    seeds["source_ff"] = b"POST\n/webhooks/\xff\xfe\n\n{}"
    seeds["source_long_utf8"] = ("POST\n/webhooks/" + "\u00e9" * 40 + "\n\n{}").encode()
    seeds["path_ff"] = b"GET\n/\xff\n\n"
    seeds["get_webhook"] = b"GET\n/webhooks/github\n\n"
    for name, body in CALL_BODIES.items():
        seeds[name] = f"POST\n/v1/calls\nAuthorization: Bearer {TOKEN}\nContent-Type: application/json\n\n{body}".encode()
    seeds["call_no_token"] = b"POST\n/v1/calls\n\n" + CALL_BODIES["call_min"].encode()
    seeds["call_bad_token"] = b"POST\n/v1/calls\nAuthorization: Bearer tok_wrong\n\n{}"
    seeds["call_basic_auth"] = b"POST\n/v1/calls\nAuthorization: Basic dG9rOg==\n\n{}"
    for probe in ("healthz", "readyz", "metrics"):
        seeds[f"probe_{probe}"] = f"GET\n/{probe}\n\n".encode()
    seeds["probe_query"] = b"GET\n/healthz?x=\xff\n\n"
    seeds["not_found"] = b"DELETE\n/v2/whatever\n\n"
    # With a Content-Length or Transfer-Encoding, the header alone is checked too (check_header).
    gh = BODIES["github"]
    head = "".join(f"{k}: {v}\n" for k, v in signed_headers("github", gh).items())
    seeds["length_signed_github"] = f"POST\n/webhooks/github\nContent-Length: {len(gh)}\n{head}\n".encode() + gh
    seeds["length_unsigned_github"] = b"POST\n/webhooks/github\nContent-Length: 2\n\n{}"
    seeds["length_malformed_stripe"] = b"POST\n/webhooks/stripe\nContent-Length: 2\nStripe-Signature: t=x,v1=00\n\n{}"
    seeds["length_slack_no_timestamp"] = ("POST\n/webhooks/slack\nContent-Length: 2\nX-Slack-Signature: v0=" + "0" * 64 +
                                          "\n\n{}").encode()
    seeds["length_acme_no_id"] = b"POST\n/webhooks/acme\nContent-Length: 2\nwebhook-signature: v1,AAAA\n\n{}"
    seeds["length_custom_bad_ts"] = ("POST\n/webhooks/custom\nContent-Length: 2\nX-Timestamp: -1\nX-Signature: sha256=" +
                                     "0" * 64 + "\n\n{}").encode()
    seeds["length_unknown_source"] = b"POST\n/webhooks/nosuch\nContent-Length: 2\n\n{}"
    seeds["length_get_webhook"] = b"GET\n/webhooks/github\nContent-Length: 1\n\nx"
    seeds["chunked_call_no_token"] = b"POST\n/v1/calls\nTransfer-Encoding: chunked\n\n{}"
    seeds["length_call_bad_token"] = b"POST\n/v1/calls\nContent-Length: 2\nAuthorization: Bearer nope\n\n{}"
    seeds["length_call"] = (f"POST\n/v1/calls\nContent-Length: 30\nAuthorization: Bearer {TOKEN}\n\n" +
                            CALL_BODIES["call_min"]).encode()
    seeds["length_zero_not_found"] = b"PUT\n/nope\nContent-Length: 000\n\n"
    seeds["length_not_found"] = b"PUT\n/nope\nContent-Length: 01\n\nx"
    seeds["length_probe_post"] = b"POST\n/healthz\nContent-Length: 1\n\nx"
    return seeds


ADMIN_TOKEN = "adm_0123456789abcdef"  # admin_service_fuzz.cpp's admin.tokens


def admin_service_seeds():
    auth = f"Authorization: Bearer {ADMIN_TOKEN}\n"
    replay = json.dumps({"keys": ["wh:github:evt_1:ci"], "reason": "fuzz"})
    return {
        "deliveries": f"GET\n/v1/deliveries?route=ci&state=dead&limit=10\n{auth}\n",
        "deliveries_bad_query": f"GET\n/v1/deliveries?limit=0&since=yesterday\n{auth}\n",
        "delivery": f"GET\n/v1/deliveries/wh%3Agithub%3Aevt_1%3Aci\n{auth}\n",
        "delivery_ff": f"GET\n/v1/deliveries/%FF\n{auth}\n",
        "call": f"GET\n/v1/calls/call_0123456789abcdef01234567\n{auth}\n",
        "event": f"GET\n/v1/events/github/evt_1\n{auth}\n",
        "replay": f"POST\n/v1/replays\n{auth}Content-Type: application/json\nIdempotency-Key: k1\n\n{replay}",
        "replay_bad_type": f"POST\n/v1/replays\n{auth}Content-Type: text/plain\n\n{replay}",
        "replay_get": f"GET\n/v1/replays/42\n{auth}\n",
        "replay_bad_id": f"GET\n/v1/replays/007\n{auth}\n",
        "routes": f"GET\n/v1/routes\n{auth}\n",
        "suspend": f"POST\n/v1/routes/ci/suspend?reason=maintenance\n{auth}\n",
        "resume": f"POST\n/v1/routes/ci/resume?rate=5\n{auth}\n",
        "no_token": "GET\n/v1/deliveries\n\n",
        "bad_token": "POST\n/v1/replays\nAuthorization: Bearer adm_wrong\nContent-Length: 2\n\n{}",
        "basic_auth": "GET\n/v1/routes\nAuthorization: Basic YWRtOg==\n\n",
        "lower_bearer": f"GET\n/v1/routes\nauthorization: bearer {ADMIN_TOKEN}\n\n",
        "second_token": "GET\n/v1/routes\nAuthorization: Bearer adm_fedcba9876543210\n\n",
        "v1_bare": "GET\n/v1\n\n",
        "v1_slash": "GET\n/v1/\n\n",
        "openapi": "GET\n/openapi.yaml\n\n",
        "openapi_post": "POST\n/openapi.yaml\n\n",
        "healthz": "GET\n/healthz\n\n",
        "metrics": "GET\n/metrics\n\n",
        "not_found": "GET\n/nope?x=1\n\n",
    }


def raw_http_seeds():
    seeds = {}
    for source, body in BODIES.items():
        hdrs = signed_headers(source, body)
        hdrs.update({"Host": "ingest", "Content-Type": "application/json", "Content-Length": str(len(body))})
        head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        seeds[f"signed_{source}"] = f"POST /webhooks/{source} HTTP/1.1\r\n{head}\r\n".encode() + body
    call = CALL_BODIES["call_full"].encode()
    seeds["call"] = (f"POST /v1/calls HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Length: {len(call)}\r\n\r\n").encode() + call
    seeds["chunked_call"] = (f"POST /v1/calls HTTP/1.1\r\nHost: i\r\nAuthorization: Bearer {TOKEN}\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n").encode() + \
        b"10\r\n" + call[:16] + b"\r\n" + f"{len(call) - 16:x}\r\n".encode() + call[16:] + b"\r\n0\r\n\r\n"
    seeds["pipelined"] = b"GET /healthz HTTP/1.1\r\nHost: i\r\n\r\nGET /readyz HTTP/1.1\r\nHost: i\r\n\r\n" \
        b"GET /metrics HTTP/1.1\r\nHost: i\r\n\r\n"
    seeds["path_ff"] = b"GET /\xff HTTP/1.1\r\nHost: i\r\n\r\n"
    seeds["source_ff"] = b"POST /webhooks/\xff HTTP/1.1\r\nHost: i\r\nContent-Length: 2\r\n\r\n{}"
    seeds["http10"] = b"GET /healthz HTTP/1.0\r\n\r\n"
    seeds["bad_request_line"] = b"GET  /healthz  HTTP/1.1\r\n\r\n"
    seeds["lying_length"] = b"POST /webhooks/github HTTP/1.1\r\nHost: i\r\nContent-Length: 100\r\n\r\n{}"
    seeds["two_lengths"] = b"POST /v1/calls HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    seeds["bad_chunk"] = b"POST /v1/calls HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    seeds["obs_fold"] = b"GET /healthz HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"
    seeds["header_ff"] = b"GET /healthz HTTP/1.1\r\nX-\xff: \xfe\xff\r\n\r\n"
    seeds["many_headers"] = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n"
    seeds["expect_continue"] = b"POST /webhooks/github HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"
    return seeds


def server_seed(request, cut=0, param=0, ending=0, hold=False, fill=False, pause=0, lengths=b""):
    """An input of http_server_fuzz.cpp: its mode byte, its parameter byte (and, for cut 3, the
    piece lengths), then the bytes written. cut: 0 one write, 1 pieces of param % 64 + 1 bytes,
    2 after every LF (param odd: every CR too), 3 pieces of the lengths given (each byte + 1).
    ending: 0 shut the sending side, 1 wait for the server to close, 2 close when quiet, 3 reset.
    hold: another connection holds 4 KiB of the body budget; fill: idle connections fill the
    connection cap; pause: 0-3 (none, 0.2 ms, 1 ms, 3 ms between writes)."""
    if cut == 3:
        param = (param & ~15) | len(lengths)
    mode = cut | (ending << 2) | (0x10 if hold else 0) | (0x20 if fill else 0) | (pause << 6)
    if isinstance(request, str):
        request = request.encode()
    return bytes([mode, param]) + (lengths if cut == 3 else b"") + request


def http_server_seeds():
    gh = BODIES["github"]
    hdrs = signed_headers("github", gh)
    hdrs.update({"Host": "ingest", "Content-Type": "application/json", "Content-Length": str(len(gh))})
    signed = (f"POST /webhooks/github HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) +
              "\r\n").encode() + gh
    call = CALL_BODIES["call_full"].encode()
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    call_req = (f"POST /v1/calls HTTP/1.1\r\nHost: i\r\n{auth}Content-Length: {len(call)}\r\n\r\n").encode() + call
    chunked = (f"POST /v1/calls HTTP/1.1\r\nHost: i\r\n{auth}Transfer-Encoding: chunked\r\n\r\n").encode() + \
        b"10\r\n" + call[:16] + b"\r\n" + f"{len(call) - 16:x}\r\n".encode() + call[16:] + b"\r\n0\r\n\r\n"
    many = "GET /healthz HTTP/1.1\r\n" + "".join(f"X-{i}: v\r\n" for i in range(12)) + "\r\n"
    head_split = "HEAD /healthz HTTP/1.1\r\nHost: i\r\n\r\n"
    pipelined = ("GET /healthz HTTP/1.1\r\nHost: i\r\n\r\nHEAD /readyz HTTP/1.1\r\nHost: i\r\n\r\n"
                 "GET /metrics HTTP/1.1\r\nHost: i\r\n\r\n").encode() + call_req + \
        b"HEAD /nope HTTP/1.1\r\nHost: i\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"

    def te(value, body=b"0\r\n\r\n"):
        return (f"POST /v1/calls HTTP/1.1\r\nHost: i\r\n{auth}Transfer-Encoding: {value}\r\n\r\n").encode() + body

    return {
        "signed_github": server_seed(signed),
        "signed_github_split_crlf": server_seed(signed, cut=2, param=1, pause=1),
        "signed_github_wait": server_seed(signed, ending=1),
        "signed_github_quiet": server_seed(signed, ending=2),
        "signed_github_reset": server_seed(signed, ending=3),
        "signed_github_lengths": server_seed(signed, cut=3, lengths=bytes([0, 2, 16, 0, 40, 1, 100])),
        "call": server_seed(call_req, cut=1, param=9),
        "too_many_headers": server_seed(many),
        "too_many_headers_split": server_seed(many, cut=1, param=6, pause=1),
        "head_too_many_headers": server_seed(many.replace("GET", "HEAD", 1), cut=2),
        # Never finished: answered 431 once max_header_count + 2 lines have come, not at the end.
        "too_many_headers_unfinished": server_seed(many[:-2], cut=2, pause=1),
        "too_many_headers_unfinished_wait": server_seed(many[:-2], ending=1),
        "folded_header": server_seed("GET /healthz HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", cut=2),
        "folded_header_post": server_seed(f"POST /v1/calls HTTP/1.1\r\n{auth}X-A: a\r\n\tb\r\nContent-Length: 2\r\n\r\n{{}}"),
        "head_split": server_seed(head_split, cut=1, param=2, pause=2),
        "head_split_wait": server_seed(head_split, cut=3, lengths=bytes([1, 0, 5]), ending=1, pause=1),
        # The request line cut before its LF: the parser holds it, so the 431 comes before the
        # parser has read the method; the answer to the HEAD still has no body.
        "head_cut_line_too_many_headers": server_seed("HEAD / HTTP/1.1\r\n" + "a:1\r\n" * 9, cut=3,
                                                      lengths=bytes([15]), pause=3),
        "head_refused": server_seed("HEAD /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", cut=2),
        "head_malformed": server_seed("HEAD /healthz HTTP/1.1\r\nBad Header\r\n\r\n"),
        "head_body_too_large": server_seed("HEAD /webhooks/github HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"),
        "pipelined": server_seed(pipelined),
        "pipelined_split": server_seed(pipelined, cut=2, pause=1),
        "pipelined_wait": server_seed(b"\r\n\r\n" + pipelined.rsplit(b"GET /healthz", 1)[0], ending=1),
        "chunked": server_seed(chunked),
        "chunked_split": server_seed(chunked, cut=1, param=4),
        "chunked_over_budget": server_seed(chunked, hold=True),
        "chunked_trailer": server_seed(te("chunked", b"2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n")),
        "chunk_extension": server_seed(te("chunked", b"2;name=value\r\n{}\r\n0\r\n\r\n")),
        "chunked_bad_size": server_seed(te("chunked", b"zz\r\n{}\r\n0\r\n\r\n")),
        "te_gzip_chunked": server_seed(te("gzip, chunked")),
        "te_chunked_gzip": server_seed(te("chunked, gzip")),
        "te_chunked_twice": server_seed(te("chunked, chunked")),
        "te_identity": server_seed(te("identity", b"{}")),
        "te_empty_elements": server_seed(te(" , chunked ,")),
        "te_upper": server_seed(te("CHUNKED", b"2\r\n{}\r\n0\r\n\r\n")),
        "te_and_length": server_seed((f"POST /v1/calls HTTP/1.1\r\n{auth}Content-Length: 2\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")),
        "te_http10": server_seed(b"POST /v1/calls HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "expect_continue": server_seed((f"POST /v1/calls HTTP/1.1\r\n{auth}Expect: 100-continue\r\n"
                                        f"Content-Length: {len(call)}\r\n\r\n").encode() + call, cut=2, pause=2),
        "expect_continue_refused": server_seed(b"POST /v1/calls HTTP/1.1\r\nExpect: 100-continue\r\n"
                                               b"Content-Length: 2\r\n\r\n{}"),
        "expect_continue_http10": server_seed((f"POST /v1/calls HTTP/1.0\r\n{auth}Expect: 100-continue\r\n"
                                               "Content-Length: 2\r\n\r\n{}")),
        "unknown_path": server_seed(b"POST /nope HTTP/1.1\r\nHost: i\r\nContent-Length: 2\r\n\r\n{}"),
        "unknown_path_get": server_seed(b"GET /nope HTTP/1.1\r\nHost: i\r\n\r\n", ending=1),
        "call_no_token": server_seed(b"POST /v1/calls HTTP/1.1\r\nHost: i\r\nContent-Length: 30\r\n\r\n" +
                                     CALL_BODIES["call_min"].encode()),
        "call_no_token_split": server_seed(b"POST /v1/calls HTTP/1.1\r\nHost: i\r\nContent-Length: 30\r\n\r\n" +
                                           CALL_BODIES["call_min"].encode(), cut=2, param=1, ending=1),
        "body_too_large": server_seed(b"POST /v1/calls HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{}"),
        "over_budget": server_seed(call_req.replace(f"Content-Length: {len(call)}".encode(), b"Content-Length: 3000"),
                                   hold=True),
        "over_cap": server_seed(b"GET /healthz HTTP/1.1\r\n\r\n", fill=True),
        "over_cap_head": server_seed(head_split, fill=True, ending=1),
        "empty_lines": server_seed(b"\r\n\n\r\n\nGET /healthz HTTP/1.1\r\n\r\n", cut=1),
        "too_many_empty_lines": server_seed(b"\r\n" * 6 + b"GET /healthz HTTP/1.1\r\n\r\n"),
        "partial_header_wait": server_seed(b"GET /healthz HTTP/1.1\r\nX-A: ", ending=1),
        "partial_body_wait": server_seed(call_req[:-10], ending=1),
        "partial_body_quiet": server_seed(call_req[:-10], ending=2),
        "bad_request_line": server_seed(b"GET  /healthz  HTTP/1.1\r\n\r\n"),
        "http10_keepalive": server_seed(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ending=1),
        "long_header": server_seed(b"GET /healthz HTTP/1.1\r\nX-A: " + b"a" * 3000 + b"\r\n\r\n", cut=1, param=63),
        "empty": server_seed(b""),
    }


def call_request_seeds():
    seeds = dict(CALL_BODIES)
    seeds["env_full"] = envelope()
    seeds["env_no_headers"] = envelope(headers=[])
    seeds["env_huge_timeout"] = envelope().replace('"timeout_ms":10000', '"timeout_ms":1e300')
    seeds["env_float"] = envelope().replace('"max_attempts":8', '"max_attempts":8.5')
    seeds["env_negative"] = envelope(max_age_seconds=-5)
    seeds["env_int_max"] = envelope(timeout_ms=2147483647, max_attempts=2147483648)
    seeds["env_bad_header"] = envelope(headers=[["X-A"]])
    seeds["env_string_num"] = envelope(timeout_ms="100")
    seeds["env_escapes"] = envelope(url="https://example.com/\u00e9\u2028", idempotency_key="\ud83d\ude00")
    return seeds


def message(topic, headers, value=b""):
    out = topic.encode() + b"\n" + b"".join(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\n"
                                             for k, v in headers)
    return out.rstrip(b"\n") + b"\n\n" + value


def expander_seeds():
    wh = [("hr-kind", "webhook"), ("hr-source", "github"), ("hr-event-id", "evt_1"),
          ("hr-received-at", str(NOW_MS)), ("hr-content-type", "application/json"),
          ("hr-fwd-x-github-event", "push")]
    retry = wh + [("hr-route", "ci"), ("hr-attempt", "2"), ("hr-first-attempt-at", str(NOW_MS + 10)),
                  ("hr-origin-topic", "hookrelay.webhooks"), ("hr-delivery-key", "wh:github:evt_1:ci")]
    call = [("hr-kind", "call"), ("hr-event-id", "call_0123"), ("hr-received-at", str(NOW_MS)),
            ("hr-call", envelope())]
    seeds = {
        "webhook": message("hookrelay.webhooks", wh, b'{"a":1}'),
        "webhook_stripe": message("hookrelay.webhooks", [("hr-kind", "webhook"), ("hr-source", "stripe"),
                                                         ("hr-event-id", "evt_s"), ("hr-received-at", "1")]),
        "webhook_no_routes": message("hookrelay.webhooks", [("hr-kind", "webhook"), ("hr-source", "slack"),
                                                            ("hr-event-id", "e"), ("hr-received-at", "0")]),
        "retry": message("hookrelay.retry.1", retry, b"body"),
        "ordered_json_pointer": message("hookrelay.webhooks", [("hr-kind", "webhook"), ("hr-source", "stripe"),
                                                               ("hr-event-id", "evt_o"), ("hr-received-at", "1")],
                                        b'{"data":{"object":{"customer":"cus_9"}}}'),
        "ordered_header": message("hookrelay.webhooks", [("hr-kind", "webhook"), ("hr-source", "custom"),
                                                         ("hr-event-id", "e2"), ("hr-received-at", "1"),
                                                         ("hr-fwd-X-Tenant", "t-7")], b"{}"),
        "ordered_retry": message("hookrelay.retry.0", wh + [("hr-route", "audit"), ("hr-attempt", "1"),
                                                            ("hr-ordering-key", "evt_1")]),
        "retry_attempt_max": message("hookrelay.retry.0", wh + [("hr-route", "ci"), ("hr-attempt", "2147483647")]),
        "retry_attempt_huge": message("hookrelay.retry.0", wh + [("hr-route", "ci"), ("hr-attempt", "9223372036854775807")]),
        "retry_attempt_neg": message("hookrelay.retry.0", wh + [("hr-route", "ci"), ("hr-attempt", "-1")]),
        "retry_unknown_route": message("hookrelay.retry.2", wh + [("hr-route", "gone"), ("hr-attempt", "1")]),
        "retry_no_route": message("hookrelay.retry.2", wh + [("hr-attempt", "1")]),
        "call": message("hookrelay.calls", call, b"\x00\x01call body"),
        "call_retry": message("hookrelay.retry.3", call + [("hr-attempt", "4"), ("hr-first-attempt-at", "x")]),
        "call_huge_timeout": message("hookrelay.calls", [("hr-kind", "call"), ("hr-event-id", "c"),
                                                         ("hr-received-at", "5"),
                                                         ("hr-call", envelope().replace('"timeout_ms":10000', '"timeout_ms":1e300'))]),
        "call_bad_envelope": message("hookrelay.calls", [("hr-kind", "call"), ("hr-event-id", "c"),
                                                         ("hr-received-at", "5"), ("hr-call", "{not json")]),
        "call_no_envelope": message("hookrelay.calls", [("hr-kind", "call"), ("hr-event-id", "c"), ("hr-received-at", "5")]),
        "received_overflow": message("hookrelay.webhooks", [("hr-kind", "webhook"), ("hr-source", "github"),
                                                            ("hr-event-id", "e"), ("hr-received-at", "99999999999999999999")]),
        "received_garbage": message("hookrelay.webhooks", [("hr-kind", "webhook"), ("hr-event-id", "e"),
                                                           ("hr-received-at", "12ab")]),
        "no_kind": message("hookrelay.webhooks", [("hr-event-id", "e")]),
        "binary_headers": message("hookrelay.webhooks", wh + [("hr-fwd-x-\xff", b"\xfe\x00\xff")], b"\xff"),
        "duplicate_headers": message("hookrelay.webhooks", wh + [("hr-kind", "call"), ("hr-kind", "webhook")]),
    }
    return seeds


def config_seeds():
    full = open(os.path.join(HERE, "..", "..", "README.md")).read()
    start = full.index("```yaml\n") + len("```yaml\n")
    readme_yaml = full[start:full.index("```", start)]
    seeds = {
        "readme": readme_yaml.replace("${GITHUB_SECRET}", "${SECRET}").replace("${HOOKRELAY_API_TOKEN}", "${TOKEN}")
                            .replace("${CI_TOKEN}", "${SECRET}"),
        "minimal": "sources: { g: { scheme: github, secrets: [a] } }\n",
        "empty": "",
        "null": "~\n",
        "env": 'sources:\n  a: { scheme: standard-webhooks, secrets: ["${WHSEC}"] }\napi_tokens: ["${TOKEN}"]\n',
        "env_missing": 'sources: { g: { scheme: github, secrets: ["${NOPE}"] } }\n',
        "env_secret_in_bad_place": 'sources: { g: { scheme: "${SECRET}", secrets: [a] } }\n',
        "env_dollars": 'kafka: { bootstrap_servers: "$$${EMPTY}h:1" }\n',
        "unterminated_env": 'postgres: { url: "${SECRET" }\n',
        "hmac_full": "sources:\n  c: { scheme: hmac, header: X-Sig, encoding: base64, prefix: \"v=\", secrets: [s],\n"
                     "       algorithm: sha512, timestamp_header: X-Ts, event_id_header: X-Id, tolerance_seconds: 10 }\n",
        "routes": "sources: { g: { scheme: github, secrets: [a] } }\nroutes:\n  g:\n"
                  "    - { name: r, url: \"https://h.example/\", timeout_ms: 100, ordered: true }\n"
                  "    - { name: r, url: \"http://h/\" }\n",
        "worker": "worker: { allowed_cidrs: [\"10.0.0.0/8\", \"fc00::/7\", \"10.0.0.1/8\"], max_in_flight: 5,\n"
                  "          allow_private_networks: yes }\n",
        "retry": "retry: { schedule_seconds: [1, 2, 2], max_attempts: 0 }\n",
        "numbers": "ingest: { max_body_bytes: 1e300, threads: -1, retry_after_seconds: 0x10 }\n",
        "big_int": "kafka: { produce_timeout_ms: 99999999999999999999999 }\n",
        "anchors": "a: &x { scheme: github, secrets: [s] }\nsources: { g: *x, h: *x }\n",
        "merge_key": "sources: { g: { <<: { scheme: github }, secrets: [s] } }\n",
        "tags": "sources: !!map { g: !!str x }\n",
        "nested": "sources: " + "[" * 100 + "]" * 100 + "\n",
        "bad_yaml": "sources: {\n  g: [\n",
        "tabs": "sources:\n\tg: 1\n",
        "listen": "ingest: { listen: \"[::1]:99999\" }\nworker: { listen: \"host\" }\n",
        "log_level": "log_level: verbose\n",
        "binary": b"sources: { \xff: { scheme: github, secrets: [\"\x00\"] } }\n",
        "route_keys": "sources: { g: { scheme: github, secrets: [a] } }\nroutes:\n  g:\n"
                      "    - name: r\n      url: \"https://h.example/\"\n"
                      "      filter: { header: { X-E: [a, b] }, body: [ { pointer: \"/a~1b/~0/0\", equals: 1 },\n"
                      "                { pointer: /x, in: [\"1\", 2.5, true, null] }, { pointer: \"\", exists: false } ] }\n"
                      "      headers: { Authorization: \"Bearer ${SECRET}\", X-Team: t }\n"
                      "      secrets: [\"${WHSEC}\", \"" + WHSEC + "\"]\n"
                      "      retry: { schedule_seconds: [1, 5], max_attempts: 3, max_age_seconds: 60 }\n"
                      "      max_in_flight: 4\n      rate_per_second: 0.5\n"
                      "      suspend_after: { consecutive_failures: 5, or_failing_for_seconds: 60 }\n",
        "route_bad_filter": "sources: { g: { scheme: github, secrets: [a] } }\nroutes:\n  g:\n"
                            "    - { name: r, url: \"http://h/\", filter: { body: [ { pointer: a~2, equals: 1, in: [] } ] } }\n",
        "route_bad_header": "sources: { g: { scheme: github, secrets: [a] } }\nroutes:\n  g:\n"
                            "    - { name: r, url: \"http://h/\", headers: { Host: \"${SECRET}\", X-A: \"${SECRET}\\r\\n\" } }\n",
    }
    return seeds


def route_filter_seeds():
    return {
        "github_push": '{"repository":{"full_name":"acme/api"},"action":"opened","sender":{"type":"User"}}',
        "escapes": '{"a/b":{"~c":[{"-":1}]},"":{"":2},"0":[[1,[2,[3,9223372036854775807]]]]}',
        "numbers": '{"action":2.5,"x":-1e308,"big":18446744073709551615,"tiny":1e-400}',
        "not_json": "action=opened&repository=acme/api",
        "truncated": '{"action":"opened","repository":{"full_name":"acme/',
        "deep": "[" * 2000 + "]" * 2000,
        "bad_utf8": b'{"action":"\xc3\x28"}',
        "with_filter": '{ body: [ { pointer: /a/0, in: [1, x] }, { pointer: "/~1", exists: true } ] }\n\n{"a":[1],"/":0}',
        "bad_filter": "{ body: [ { pointer: a } ] }\n\n{}",
    }


def text_seeds():
    return {
        "ascii": b"hello, world",
        "quotes": b'a "quoted" \\ back\\slash {braces},commas NULL',
        "controls": bytes(range(0, 32)) + b"\x7f",
        "utf8": "caf\u00e9 \u20ac \U0001f600 \u2028".encode(),
        "invalid": b"\xff\xfe\xc0\xaf\xe0\x80\xaf\xed\xa0\x80\xf4\x90\x80\x80\xf8\x88\x80\x80\x80",
        "truncated": b"ok\xe2\x82",
        "nul": b"a\x00b",
        "max_cp": b"\xf4\x8f\xbf\xbf\xef\xbf\xbf\xee\x80\x80",
        "empty": b"",
    }


def retry_after_seeds():
    def seed(header, now_ms=NOW_MS, attempts=3, age_ms=60_000, r=0.5):
        # FuzzedDataProvider takes integers from the end of the input, the last byte the most
        # significant, as many bytes as the range needs: now_ms in [0, 7258118400000] (6 bytes),
        # attempts in [-2, 200] (1), age in [0, 30 days] (4), then the probability (8).
        def tail(value, lo, nbytes):
            v = value - lo
            return bytes((v >> (8 * i)) & 0xff for i in range(nbytes))
        suffix = tail(min(int(r * 2**64), 2**64 - 1), 0, 8) + tail(age_ms, 0, 4) + tail(attempts, -2, 1) + tail(now_ms, 0, 6)
        return header.encode() + suffix
    return {
        "seconds": seed("120"),
        "zero": seed("0"),
        "spaces": seed(" \t30 \t"),
        "huge": seed("9223372036854775807"),
        "past_date": seed("Sun, 06 Nov 1994 08:49:37 GMT"),
        "future_date": seed("Wed, 14 Nov 2023 22:20:00 GMT"),
        "far_future": seed("Fri, 31 Dec 9999 23:59:60 GMT"),
        "bad_date": seed("Sun, 31 Feb 2023 25:61:61 GMT"),
        "rfc850": seed("Sunday, 06-Nov-94 08:49:37 GMT"),
        "asctime": seed("Sun Nov  6 08:49:37 1994"),
        "negative": seed("-5"),
        "fraction": seed("1.5"),
        "last_attempt": seed("10", attempts=8),
        "old": seed("10", age_ms=86_400_000),
        "epoch": seed("Thu, 01 Jan 1970 00:00:00 GMT", now_ms=0),
    }


def ssrf_seeds():
    sin = struct.pack("=H", 2) + b"\x00\x50" + bytes([169, 254, 169, 254]) + b"\x00" * 8
    sin6 = struct.pack("=H", 10) + b"\x01\xbb" + b"\x00" * 4 + bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]) + b"\x00" * 4
    return {
        "public_v4": b"93.184.216.34\n0.0.0.0/0\n" + sin,
        "loopback": b"127.0.0.1\n127.0.0.0/8\n" + sin6,
        "metadata": b"169.254.169.254\n169.254.169.254/32\n",
        "private": b"10.1.2.3\n10.0.0.0/8\n",
        "cgnat": b"100.64.0.1\n100.64.0.0/10\n",
        "mapped": b"::ffff:127.0.0.1\n::ffff:0:0/96\n",
        "nat64": b"64:ff9b::a00:1\n64:ff9b::/96\n",
        "sixtofour": b"2002:a00:1::\n2002::/16\n",
        "v6_public": b"2606:4700:4700::1111\n2000::/3\n",
        "v6_link_local": b"fe80::1\nfe80::/10\n",
        "v6_zone": b"fe80::1%eth0\nfe80::/129\n",
        "unspecified": b"0.0.0.0\n::/0\n",
        "broadcast": b"255.255.255.255\n10.0.0.1/8\n",
        "leading_zero": b"010.0.0.1\n10.0.0.0/08\n",
        "short_form": b"127.1\n127.0.0.0/33\n",
        "embedded_nul": b"8.8.8.8\x00127.0.0.1\n10.0.0.0/8\x00junk\n",
        "junk": b"localhost\n/8\n\xff",
        "v4_in_v6_text": b"::127.0.0.1\n::/96\n",
    }


def dlq_seeds():
    # DLQ messages as the harness reads them: KEY\nname: value\n...\n\nVALUE
    base = [("hr-delivery-key", "wh:github:evt_1:ci"), ("hr-origin-topic", "hookrelay.webhooks"),
            ("hr-attempt", "8"), ("hr-first-attempt-at", str(NOW_MS)), ("hr-last-attempt-at", str(NOW_MS + 5000)),
            ("hr-last-status", "400"), ("hr-last-error", "bad request"), ("hr-dlq-reason", "permanent")]
    return {
        "plain": message("wh:github:evt_1:ci", base, b'{"a":1}'),
        "binary_error": message("k", base[:6] + [("hr-last-error", b"\xff\xfe\x00\x1b[31mred\r\n")], b"\x00\xff"),
        "binary_names": message("\xff", [("hr-fwd-\xff\xfe", b"\xc3\x28"), ("", b"")], b""),
        "long_value": message("k", [("hr-last-error", "x" * 500 + "\u00e9" * 100)]),
        "no_headers": b"key\n\nbody",
        "empty": b"",
    }


def main():
    write("ingest_request", ingest_seeds())
    write("raw_http", raw_http_seeds())
    write("http_server", http_server_seeds())
    write("admin_service", admin_service_seeds())
    write("call_request", call_request_seeds())
    write("message_expander", expander_seeds())
    write("config", config_seeds())
    write("route_filter", route_filter_seeds())
    write("text_writers", text_seeds())
    write("retry_after", retry_after_seeds())
    write("ssrf_guard", ssrf_seeds())
    write("dlq_output", dlq_seeds())


if __name__ == "__main__":
    main()
