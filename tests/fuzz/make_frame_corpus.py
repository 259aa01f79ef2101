#!/usr/bin/python3
"""Write the seed corpus of tests/fuzz/fuzz_frame.c.

Run once from the repository root:  /usr/bin/python3 tests/fuzz/make_frame_corpus.py
It (re)writes tests/fuzz/corpus/fuzz_frame/*: one or a few valid frames per
file, covering every frame type, laid out as proto/PROTOCOL.md describes.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_frame")

(HELLO, AUTH, WELCOME, REJECT, ROUTE, ROUTE_ANSWER, OPEN, ACCEPT, REFUSE, DATA,
 WINDOW, FIN, RST, DATAGRAM, PING, PONG, GOAWAY) = range(1, 18)
HTTP, TLS, TCP, UDP = 1, 2, 3, 4
VERSION = 1
OPEN_FLAG_TLS = 1


def frame(ftype, stream, payload=b"", flags=0):
    return struct.pack(">BBII", ftype, flags, stream, len(payload)) + payload


def s8(text):
    raw = text.encode("ascii")
    assert len(raw) < 256
    return bytes([len(raw)]) + raw


def hello(challenge=bytes(range(32))):
    return frame(HELLO, 0, struct.pack(">H", VERSION) + challenge)


def auth(name="home-nas"):
    return frame(AUTH, 0, struct.pack(">H", VERSION) + bytes(range(100, 132)) +
                 bytes(range(64)) + s8(name))


def welcome(window=262144, ping_ms=15000, name="nas"):
    return frame(WELCOME, 0, struct.pack(">II", window, ping_ms) + s8(name))


def code(ftype, stream, value, reason=""):
    return frame(ftype, stream, struct.pack(">I", value) + s8(reason))


def route(stream, kind, lo=0, hi=0, host="", hsts=0, flags=0):
    return frame(ROUTE, stream, struct.pack(">BHHI", kind, lo, hi, hsts) + s8(host), flags)


def open_(stream, route_id, kind, family=4, addr=b"\xc0\x00\x02\x01", port=50000,
          dst_family=4, dst_addr=b"\xcb\x00\x71\x05", dst_port=443, flags=0):
    addr = addr.ljust(16, b"\0")
    dst_addr = dst_addr.ljust(16, b"\0")
    payload = struct.pack(">IBB", route_id, kind, family) + addr + struct.pack(">H", port)
    payload += struct.pack(">B", dst_family) + dst_addr + struct.pack(">H", dst_port)
    assert len(payload) == 43
    return frame(OPEN, stream, payload, flags)


def u32(ftype, stream, value):
    return frame(ftype, stream, struct.pack(">I", value))


def ping(ftype, value):
    return frame(ftype, 0, struct.pack(">Q", value))


SEEDS = {
    "hello": hello(),
    "auth": auth(),
    "auth-noname": auth(""),
    "auth-longname": auth("n" * 63),
    "welcome": welcome(),
    "reject": code(REJECT, 0, 9, "unknown key"),
    "route-http": route(1, HTTP, host="app.example.com", hsts=31536000, flags=1),
    "route-tls": route(2, TLS, host="*.example.org"),
    "route-tcp": route(3, TCP, 2222, 2222),
    "route-udp": route(4, UDP, 51820, 51830),
    "route-answer": code(ROUTE_ANSWER, 1, 0) + code(ROUTE_ANSWER, 2, 1, "host taken"),
    "open": open_(7, 1, HTTP, flags=OPEN_FLAG_TLS),
    "open-v6": open_(8, 3, TCP, 6, bytes(range(16)), 1, 6, bytes(range(16, 32)), 2222),
    "accept": frame(ACCEPT, 7),
    "refuse": code(REFUSE, 7, 2, "connection refused"),
    "data": frame(DATA, 7, b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"),
    "data-empty": frame(DATA, 7),
    "window": u32(WINDOW, 7, 65536),
    "fin": frame(FIN, 7),
    "rst": u32(RST, 7, 6),
    "datagram": frame(DATAGRAM, 9, b"\x00\x01\x02\x03wireguard"),
    "ping": ping(PING, 0x0102030405060708),
    "pong": ping(PONG, 0x0102030405060708),
    "goaway": code(GOAWAY, 0, 10, "edge restarting"),
    "handshake": hello() + auth() + welcome() + route(1, HTTP, host="a.example") +
                 code(ROUTE_ANSWER, 1, 0),
    "stream": open_(5, 1, HTTP) + frame(ACCEPT, 5) + frame(DATA, 5, b"hello") +
              u32(WINDOW, 5, 5) + frame(DATA, 5, b"bye") + frame(FIN, 5),
    "udp-flow": open_(9, 4, UDP) + frame(DATAGRAM, 9, b"q") + frame(DATAGRAM, 9, b"") +
                u32(RST, 9, 7),
    "partial": ping(PING, 1) + hello()[:20],
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
