#!/usr/bin/env python3
"""The chaos test's webhook receiver: one asyncio process, HTTP/1.1 keep-alive, no threads.

Workers deliver to http://127.0.0.1:PORT/w/<worker id>/<route> (each worker's config names its
own path, so the receiver knows which worker sent a request). Route --bad-route always gets 400
(a permanent failure: the delivery must go to the DLQ); every other request gets 500 with
probability --fail-fraction (retryable), else 200.

One line per request goes to --log, tab-separated:
  unix time, worker, route, webhook-id header, body "id", status answered, X-Hookrelay-Attempt
The log is flushed every 0.5 s and at SIGTERM/SIGINT, after which the process exits 0.
"""

import argparse
import asyncio
import random
import re
import signal
import sys
import time

BODY_ID = re.compile(rb'"id"\s*:\s*"([^"]*)"')


class Receiver(asyncio.Protocol):
    def __init__(self, app):
        self.app = app
        self.buf = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.transport.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            headers = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                if headers.get("expect", "").lower() == "100-continue" and not getattr(self, "_continued", False):
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self._continued = True
                return
            self._continued = False
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.respond(parts[1] if len(parts) > 1 else "/", headers, body)

    def respond(self, target, headers, body):
        app = self.app
        seg = target.split("?", 1)[0].split("/")
        # /w/<worker>/<route>
        worker = seg[2] if len(seg) > 3 and seg[1] == "w" else "?"
        route = seg[3] if len(seg) > 3 and seg[1] == "w" else target
        if route == app.bad_route:
            status, reason = 400, b"Bad Request"
        elif app.rng.random() < app.fail_fraction:
            status, reason = 500, b"Internal Server Error"
        else:
            status, reason = 200, b"OK"
        m = BODY_ID.search(body)
        body_id = m.group(1).decode("latin-1") if m else ""
        app.out.append(f"{time.time():.6f}\t{worker}\t{route}\t{headers.get('webhook-id', '')}\t{body_id}\t"
                       f"{status}\t{headers.get('x-hookrelay-attempt', '')}\n")
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n" % (status, reason))


class App:
    def __init__(self, args):
        self.bad_route = args.bad_route
        self.fail_fraction = args.fail_fraction
        self.rng = random.Random(args.seed)
        self.out = []
        self.log = open(args.log, "a", buffering=1 << 20)

    def flush(self):
        if self.out:
            self.log.write("".join(self.out))
            self.out.clear()
        self.log.flush()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fail-fraction", type=float, default=0.2)
    ap.add_argument("--bad-route", default="gbad")
    ap.add_argument("--log", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    app = App(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Receiver(app), "127.0.0.1", args.port, backlog=1024,
                                      reuse_address=True)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"receiver listening on 127.0.0.1:{args.port}", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
        app.flush()
    server.close()
    app.flush()
    app.log.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
