/*
 * tests/unit/proto/frame.c - tests for proto/frame.c.
 *
 * Every decode runs on a heap copy of exactly the bytes under test, so a
 * read past the end shows up under AddressSanitizer.
 */
#include <stdlib.h>

#include "proto/frame.h"
#include "tests/unit/unit.h"

#define BUF_MAX (FRAME_HEADER_LEN + FRAME_MAX_DATA + 64)

static uint8_t big_payload[FRAME_MAX_DATA];
static uint8_t enc[BUF_MAX];

/* Decode a heap copy of buf[0..len) so ASan sees any overread. */
static ssize_t decode_exact(const uint8_t *buf, size_t len, struct frame *f, const char **err)
{
	uint8_t *copy = malloc(len ? len : 1);
	ssize_t rc;

	if (copy == NULL)
		abort();
	if (len)
		memcpy(copy, buf, len);
	rc = frame_decode(copy, len, f, err);
	/* payload points into the copy: move it to the caller's buffer. */
	if (rc > 0)
		f->payload = buf + (f->payload - copy);
	free(copy);
	return rc;
}

static struct frame mk(uint8_t type, uint32_t stream)
{
	struct frame f;

	memset(&f, 0, sizeof(f));
	f.type = type;
	f.stream = stream;
	return f;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void str_fill(char *s, size_t n, char c)
{
	memset(s, c, n);
	s[n] = '\0';
}

/* Encode f, decode it back into *g, check lengths; returns encoded size or 0. */
static size_t roundtrip(const struct frame *f, struct frame *g)
{
	const char *err = NULL;
	size_t n = frame_encode(enc, sizeof(enc), f);
	ssize_t rc;

	CHECK(n >= FRAME_HEADER_LEN);
	if (n < FRAME_HEADER_LEN)
		return 0;
	rc = decode_exact(enc, n, g, &err);
	CHECK(rc == (ssize_t)n);
	if (rc != (ssize_t)n) {
		fprintf(stderr, "  decode %s: %s\n", frame_type_name(f->type), err ? err : "-");
		return 0;
	}
	CHECK(g->type == f->type);
	CHECK(g->flags == f->flags);
	CHECK(g->stream == f->stream);
	CHECK(g->len == n - FRAME_HEADER_LEN);
	CHECK(g->payload == enc + FRAME_HEADER_LEN);
	CHECK(frame_check(g, NULL) == 0);
	return n;
}

/* Decode only a header (no payload bytes) and expect an immediate error. */
static void expect_header_error(uint8_t type, uint8_t flags, uint32_t stream, uint32_t len)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame f;
	const char *err = NULL;

	frame_put_header(hdr, type, flags, stream, len);
	CHECK(decode_exact(hdr, sizeof(hdr), &f, &err) == FRAME_ERROR);
	CHECK(err != NULL && err[0] != '\0');
}

/* Expect buf[0..len) to be rejected once complete. */
static void expect_error(const uint8_t *buf, size_t len, const char *want)
{
	struct frame f;
	const char *err = NULL;

	CHECK(decode_exact(buf, len, &f, &err) == FRAME_ERROR);
	CHECK(err != NULL);
	if (want && err && strcmp(err, want) != 0) {
		fprintf(stderr, "  got error \"%s\", want \"%s\"\n", err, want);
		CHECK(strcmp(err, want) == 0);
	}
}

/* Encode f, then patch byte `off` to `val` and expect decode to fail. */
static void expect_patched_error(const struct frame *f, size_t off, uint8_t val, const char *want)
{
	size_t n = frame_encode(enc, sizeof(enc), f);

	CHECK(n > off);
	if (n <= off)
		return;
	enc[off] = val;
	expect_error(enc, n, want);
}

/* One valid frame of every type, several for those with variants. */
static size_t sample_frames(struct frame *out)
{
	size_t n = 0;
	struct frame f;

	f = mk(FRAME_HELLO, 0);
	f.u.hello.version = PROTO_VERSION;
	fill(f.u.hello.challenge, PROTO_CHALLENGE_LEN, 1);
	out[n++] = f;

	f = mk(FRAME_AUTH, 0);
	f.u.auth.version = PROTO_VERSION;
	fill(f.u.auth.pubkey, PROTO_PUBKEY_LEN, 2);
	fill(f.u.auth.sig, PROTO_SIG_LEN, 3);
	strcpy(f.u.auth.name, "home-nas");
	out[n++] = f;
	f.u.auth.name[0] = '\0';
	out[n++] = f;
	str_fill(f.u.auth.name, PROTO_MAX_NAME, 'n');
	out[n++] = f;

	f = mk(FRAME_WELCOME, 0);
	f.u.welcome.window = 256 * 1024;
	f.u.welcome.ping_ms = 15000;
	strcpy(f.u.welcome.name, "nas");
	out[n++] = f;

	f = mk(FRAME_REJECT, 0);
	f.u.code.code = CODE_AUTH;
	strcpy(f.u.code.reason, "unknown key");
	out[n++] = f;

	f = mk(FRAME_ROUTE, 1);
	f.u.route.kind = ROUTE_KIND_HTTP;
	strcpy(f.u.route.host, "app.example.com");
	out[n++] = f;
	f = mk(FRAME_ROUTE, 2);
	f.u.route.kind = ROUTE_KIND_TLS;
	str_fill(f.u.route.host, PROTO_MAX_HOST, 'h');
	out[n++] = f;
	f = mk(FRAME_ROUTE, 3);
	f.u.route.kind = ROUTE_KIND_TCP;
	f.u.route.port_lo = 2222;
	f.u.route.port_hi = 2222;
	out[n++] = f;
	f = mk(FRAME_ROUTE, 0xffffffffu);
	f.u.route.kind = ROUTE_KIND_UDP;
	f.u.route.port_lo = 1;
	f.u.route.port_hi = 65535;
	out[n++] = f;

	f = mk(FRAME_ROUTE_ANSWER, 1);
	f.u.code.code = ROUTE_ACCEPTED;
	out[n++] = f;
	f = mk(FRAME_ROUTE_ANSWER, 2);
	f.u.code.code = ROUTE_REFUSED;
	strcpy(f.u.code.reason, "host already taken");
	out[n++] = f;

	f = mk(FRAME_OPEN, 7);
	f.flags = OPEN_FLAG_TLS;
	f.u.open.route = 1;
	f.u.open.kind = ROUTE_KIND_HTTP;
	f.u.open.family = 4;
	memcpy(f.u.open.addr, "\xc0\x00\x02\x01", 4);
	f.u.open.port = 54321;
	f.u.open.dst_family = 6;
	fill(f.u.open.dst_addr, 16, 9);
	f.u.open.dst_port = 443;
	out[n++] = f;

	out[n++] = mk(FRAME_ACCEPT, 7);

	f = mk(FRAME_REFUSE, 7);
	f.u.code.code = CODE_REFUSED;
	strcpy(f.u.code.reason, "connect 127.0.0.1:8080: Connection refused");
	out[n++] = f;

	f = mk(FRAME_DATA, 7);
	f.payload = (const uint8_t *)"hello";
	f.len = 5;
	out[n++] = f;
	f.len = 0;
	out[n++] = f;

	f = mk(FRAME_WINDOW, 7);
	f.u.window = 65536;
	out[n++] = f;

	out[n++] = mk(FRAME_FIN, 7);

	f = mk(FRAME_RST, 7);
	f.u.code.code = CODE_FLOW;
	out[n++] = f;

	f = mk(FRAME_DATAGRAM, 9);
	f.payload = (const uint8_t *)"\x00\x01\x02";
	f.len = 3;
	out[n++] = f;

	f = mk(FRAME_PING, 0);
	f.u.ping = 0x0102030405060708ull;
	out[n++] = f;
	f = mk(FRAME_PONG, 0);
	f.u.ping = 0xfffffffffffffffeull;
	out[n++] = f;

	f = mk(FRAME_GOAWAY, 0);
	f.u.code.code = CODE_SHUTDOWN;
	str_fill(f.u.code.reason, PROTO_MAX_REASON, 'r');
	out[n++] = f;
	return n;
}

#define SAMPLES_MAX 40

static void test_hello_roundtrip(void)
{
	struct frame f = mk(FRAME_HELLO, 0), g;

	f.u.hello.version = PROTO_VERSION;
	fill(f.u.hello.challenge, PROTO_CHALLENGE_LEN, 42);
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 34);
	CHECK(g.u.hello.version == PROTO_VERSION);
	CHECK(memcmp(g.u.hello.challenge, f.u.hello.challenge, PROTO_CHALLENGE_LEN) == 0);
}

static void test_auth_roundtrip(void)
{
	struct frame f = mk(FRAME_AUTH, 0), g;

	f.u.auth.version = PROTO_VERSION;
	fill(f.u.auth.pubkey, PROTO_PUBKEY_LEN, 5);
	fill(f.u.auth.sig, PROTO_SIG_LEN, 6);
	strcpy(f.u.auth.name, "home nas ~1");
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 99 + 11);
	CHECK(g.u.auth.version == PROTO_VERSION);
	CHECK(memcmp(g.u.auth.pubkey, f.u.auth.pubkey, PROTO_PUBKEY_LEN) == 0);
	CHECK(memcmp(g.u.auth.sig, f.u.auth.sig, PROTO_SIG_LEN) == 0);
	CHECK(strcmp(g.u.auth.name, "home nas ~1") == 0);

	f.u.auth.name[0] = '\0';
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 99);
	CHECK(g.u.auth.name[0] == '\0');

	str_fill(f.u.auth.name, PROTO_MAX_NAME, 'x');
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 99 + PROTO_MAX_NAME);
	CHECK(strlen(g.u.auth.name) == PROTO_MAX_NAME);
}

static void test_welcome_roundtrip(void)
{
	struct frame f = mk(FRAME_WELCOME, 0), g;

	f.u.welcome.window = FRAME_MAX_WINDOW;
	f.u.welcome.ping_ms = 0xfedcba98u;
	strcpy(f.u.welcome.name, "nas");
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 9 + 3);
	CHECK(g.u.welcome.window == FRAME_MAX_WINDOW);
	CHECK(g.u.welcome.ping_ms == 0xfedcba98u);
	CHECK(strcmp(g.u.welcome.name, "nas") == 0);

	f.u.welcome.window = 1;
	CHECK(roundtrip(&f, &g) > 0);
	CHECK(g.u.welcome.window == 1);
}

static void test_code_frames_roundtrip(void)
{
	static const uint8_t types[] = {FRAME_REJECT, FRAME_REFUSE, FRAME_GOAWAY};
	size_t i;

	for (i = 0; i < sizeof(types); i++) {
		uint32_t stream = types[i] == FRAME_REFUSE ? 3 : 0;
		struct frame f = mk(types[i], stream), g;

		f.u.code.code = 0xdeadbeefu; /* codes are open ended */
		strcpy(f.u.code.reason, "bye now");
		CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 5 + 7);
		CHECK(g.u.code.code == 0xdeadbeefu);
		CHECK(strcmp(g.u.code.reason, "bye now") == 0);

		str_fill(f.u.code.reason, PROTO_MAX_REASON, '~');
		CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 5 + PROTO_MAX_REASON);
		CHECK(strlen(g.u.code.reason) == PROTO_MAX_REASON);

		f.u.code.reason[0] = '\0';
		CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 5);
		CHECK(g.u.code.reason[0] == '\0');
	}
}

static void test_route_roundtrip(void)
{
	struct frame f = mk(FRAME_ROUTE, 1), g;

	f.u.route.kind = ROUTE_KIND_HTTP;
	strcpy(f.u.route.host, "*.example.com");
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 10 + 13);
	CHECK(g.stream == 1 && g.u.route.kind == ROUTE_KIND_HTTP);
	CHECK(g.u.route.port_lo == 0 && g.u.route.port_hi == 0);
	CHECK(strcmp(g.u.route.host, "*.example.com") == 0);

	f.u.route.kind = ROUTE_KIND_TLS;
	str_fill(f.u.route.host, PROTO_MAX_HOST, 'a');
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 10 + PROTO_MAX_HOST);
	CHECK(g.u.route.kind == ROUTE_KIND_TLS && strlen(g.u.route.host) == PROTO_MAX_HOST);

	f = mk(FRAME_ROUTE, 0x80000001u);
	f.u.route.kind = ROUTE_KIND_TCP;
	f.u.route.port_lo = 1000;
	f.u.route.port_hi = 1010;
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 10);
	CHECK(g.stream == 0x80000001u && g.u.route.kind == ROUTE_KIND_TCP);
	CHECK(g.u.route.port_lo == 1000 && g.u.route.port_hi == 1010);
	CHECK(g.u.route.host[0] == '\0');

	f.u.route.kind = ROUTE_KIND_UDP;
	f.u.route.port_lo = 65535;
	f.u.route.port_hi = 65535;
	CHECK(roundtrip(&f, &g) > 0);
	CHECK(g.u.route.kind == ROUTE_KIND_UDP && g.u.route.port_lo == 65535);
}

static void test_route_answer_roundtrip(void)
{
	struct frame f = mk(FRAME_ROUTE_ANSWER, 4), g;

	f.u.code.code = ROUTE_ACCEPTED;
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 5);
	CHECK(g.stream == 4 && g.u.code.code == ROUTE_ACCEPTED && g.u.code.reason[0] == '\0');

	f.u.code.code = ROUTE_REFUSED;
	strcpy(f.u.code.reason, "port 22 not allowed");
	CHECK(roundtrip(&f, &g) > 0);
	CHECK(g.u.code.code == ROUTE_REFUSED);
	CHECK(strcmp(g.u.code.reason, "port 22 not allowed") == 0);
}

static void test_open_roundtrip(void)
{
	struct frame f = mk(FRAME_OPEN, 0xfffffffeu), g;

	f.flags = OPEN_FLAG_TLS;
	f.u.open.route = 0x01020304u;
	f.u.open.kind = ROUTE_KIND_TCP;
	f.u.open.family = 6;
	fill(f.u.open.addr, 16, 100);
	f.u.open.port = 65535;
	f.u.open.dst_family = 4;
	memcpy(f.u.open.dst_addr, "\x0a\x00\x00\x01", 4);
	f.u.open.dst_port = 2222;
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 43);
	CHECK(g.flags == OPEN_FLAG_TLS && g.stream == 0xfffffffeu);
	CHECK(g.u.open.route == 0x01020304u && g.u.open.kind == ROUTE_KIND_TCP);
	CHECK(g.u.open.family == 6 && memcmp(g.u.open.addr, f.u.open.addr, 16) == 0);
	CHECK(g.u.open.port == 65535);
	CHECK(g.u.open.dst_family == 4 && memcmp(g.u.open.dst_addr, f.u.open.dst_addr, 16) == 0);
	CHECK(g.u.open.dst_port == 2222);

	f.flags = 0;
	f.u.open.kind = ROUTE_KIND_UDP;
	f.u.open.family = 0;
	f.u.open.dst_family = 0;
	CHECK(roundtrip(&f, &g) > 0);
	CHECK(g.flags == 0 && g.u.open.kind == ROUTE_KIND_UDP && g.u.open.family == 0);
}

static void test_empty_frames_roundtrip(void)
{
	struct frame f = mk(FRAME_ACCEPT, 1), g;

	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN);
	CHECK(g.type == FRAME_ACCEPT && g.len == 0);
	f = mk(FRAME_FIN, 0xffffffffu);
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN);
	CHECK(g.type == FRAME_FIN && g.stream == 0xffffffffu);
}

static void test_data_roundtrip(void)
{
	static const uint8_t types[] = {FRAME_DATA, FRAME_DATAGRAM};
	size_t i;

	fill(big_payload, sizeof(big_payload), 77);
	for (i = 0; i < sizeof(types); i++) {
		struct frame f = mk(types[i], 5), g;

		f.payload = big_payload;
		f.len = FRAME_MAX_DATA;
		CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + FRAME_MAX_DATA);
		CHECK(g.len == FRAME_MAX_DATA);
		CHECK(memcmp(g.payload, big_payload, FRAME_MAX_DATA) == 0);

		f.len = 1;
		CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 1);
		CHECK(g.len == 1 && g.payload[0] == big_payload[0]);

		f.payload = NULL; /* allowed when empty */
		f.len = 0;
		CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN);
		CHECK(g.len == 0);

		f.len = 3; /* but not with bytes to send */
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		f.payload = big_payload;
		f.len = FRAME_MAX_DATA + 1;
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	}
}

static void test_window_roundtrip(void)
{
	struct frame f = mk(FRAME_WINDOW, 9), g;

	f.u.window = 1;
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 4);
	CHECK(g.u.window == 1);
	f.u.window = FRAME_MAX_WINDOW;
	CHECK(roundtrip(&f, &g) > 0);
	CHECK(g.u.window == FRAME_MAX_WINDOW);
}

static void test_rst_roundtrip(void)
{
	struct frame f = mk(FRAME_RST, 9), g;

	f.u.code.code = CODE_CANCEL;
	strcpy(f.u.code.reason, "ignored: RST carries no reason");
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 4);
	CHECK(g.u.code.code == CODE_CANCEL && g.u.code.reason[0] == '\0');
}

static void test_ping_pong_roundtrip(void)
{
	struct frame f = mk(FRAME_PING, 0), g;

	f.u.ping = 0x8000000000000001ull;
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 8);
	CHECK(g.u.ping == 0x8000000000000001ull);
	f.type = FRAME_PONG;
	f.u.ping = 0;
	CHECK(roundtrip(&f, &g) == FRAME_HEADER_LEN + 8);
	CHECK(g.type == FRAME_PONG && g.u.ping == 0);
}

/* Hand-written bytes: the layout in PROTOCOL.md, independent of the encoder. */
static void test_golden_bytes(void)
{
	static const uint8_t window[] = {11, 0, 0, 0, 1, 2, 0, 0, 0, 4, 0, 1, 0, 0};
	static const uint8_t ping[] = {15, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
	static const uint8_t route[] = {5, 1, 0, 0, 0, 3,    0,    0, 0,   10 + 3, 1,  0,
	                                0, 0, 0, 0, 1, 0x51, 0x80, 3, 'a', '.',    'b'};
	static const uint8_t tcp[] = {5, 0,    0,    0,    0,    4, 0, 0, 0, 10,
	                              3, 0x08, 0xae, 0x08, 0xb7, 0, 0, 0, 0, 0};
	static const uint8_t refuse[] = {9, 0, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0, 2, 2, 'n', 'o'};
	static const uint8_t welcome[] = {3, 0, 0, 0, 0, 0, 0,    0,    0, 10,
	                                  0, 4, 0, 0, 0, 0, 0x3a, 0x98, 1, 'x'};
	static const uint8_t data[] = {10, 0, 0, 0, 0, 7, 0, 0, 0, 2, 'h', 'i'};
	struct frame f;
	const char *err = NULL;

	CHECK(decode_exact(window, sizeof(window), &f, &err) == sizeof(window));
	CHECK(f.type == FRAME_WINDOW && f.stream == 0x102 && f.u.window == 0x10000);
	CHECK(frame_encode(enc, sizeof(enc), &f) == sizeof(window));
	CHECK(memcmp(enc, window, sizeof(window)) == 0);

	CHECK(decode_exact(ping, sizeof(ping), &f, &err) == sizeof(ping));
	CHECK(f.u.ping == 0x0102030405060708ull);
	CHECK(frame_encode(enc, sizeof(enc), &f) == sizeof(ping));
	CHECK(memcmp(enc, ping, sizeof(ping)) == 0);

	CHECK(decode_exact(route, sizeof(route), &f, &err) == sizeof(route));
	CHECK(f.stream == 3 && f.u.route.kind == ROUTE_KIND_HTTP);
	CHECK(f.flags == ROUTE_FLAG_NO_REDIRECT && f.u.route.hsts == 86400);
	CHECK(strcmp(f.u.route.host, "a.b") == 0);
	CHECK(frame_encode(enc, sizeof(enc), &f) == sizeof(route));
	CHECK(memcmp(enc, route, sizeof(route)) == 0);

	CHECK(decode_exact(tcp, sizeof(tcp), &f, &err) == sizeof(tcp));
	CHECK(f.u.route.kind == ROUTE_KIND_TCP && f.u.route.port_lo == 2222);
	CHECK(f.u.route.port_hi == 2231);

	CHECK(decode_exact(refuse, sizeof(refuse), &f, &err) == sizeof(refuse));
	CHECK(f.u.code.code == CODE_REFUSED && strcmp(f.u.code.reason, "no") == 0);

	CHECK(decode_exact(welcome, sizeof(welcome), &f, &err) == sizeof(welcome));
	CHECK(f.u.welcome.window == 0x40000 && f.u.welcome.ping_ms == 15000);
	CHECK(strcmp(f.u.welcome.name, "x") == 0);

	CHECK(decode_exact(data, sizeof(data), &f, &err) == sizeof(data));
	CHECK(f.len == 2 && memcmp(f.payload, "hi", 2) == 0);
}

static void test_truncation_every_offset(void)
{
	struct frame samples[SAMPLES_MAX], g;
	size_t ns = sample_frames(samples), i, k;
	uint8_t buf[FRAME_HEADER_LEN + 512];

	CHECK(ns <= SAMPLES_MAX);
	for (i = 0; i < ns; i++) {
		size_t n = frame_encode(buf, sizeof(buf), &samples[i]);
		const char *err = NULL;

		CHECK(n >= FRAME_HEADER_LEN);
		for (k = 0; k < n; k++) {
			ssize_t rc = decode_exact(buf, k, &g, &err);

			if (rc != FRAME_INCOMPLETE)
				fprintf(stderr, "  %s truncated at %zu: %zd\n",
				        frame_type_name(samples[i].type), k, rc);
			CHECK(rc == FRAME_INCOMPLETE);
		}
		CHECK(decode_exact(buf, n, &g, &err) == (ssize_t)n);
	}
}

static void test_truncation_big_data(void)
{
	struct frame f = mk(FRAME_DATA, 1), g;
	size_t n, k;
	const char *err = NULL;

	fill(big_payload, sizeof(big_payload), 3);
	f.payload = big_payload;
	f.len = FRAME_MAX_DATA;
	n = frame_encode(enc, sizeof(enc), &f);
	CHECK(n == FRAME_HEADER_LEN + FRAME_MAX_DATA);
	for (k = 0; k < n; k += (k < 64 || n - k < 64) ? 1 : 997)
		CHECK(frame_decode(enc, k, &g, &err) == FRAME_INCOMPLETE);
	CHECK(frame_decode(enc, n - 1, &g, &err) == FRAME_INCOMPLETE);
}

static void test_oversize_lengths(void)
{
	uint8_t t;

	expect_header_error(FRAME_DATA, 0, 1, FRAME_MAX_DATA + 1);
	expect_header_error(FRAME_DATAGRAM, 0, 1, FRAME_MAX_DATA + 1);
	for (t = 1; t <= FRAME_TYPE_MAX; t++) {
		uint32_t stream =
		    (t == FRAME_HELLO || t == FRAME_AUTH || t == FRAME_WELCOME ||
		     t == FRAME_REJECT || t == FRAME_PING || t == FRAME_PONG || t == FRAME_GOAWAY)
		        ? 0
		        : 1;

		expect_header_error(t, 0, stream, 0xffffffffu);
		expect_header_error(t, 0, stream, 0x80000000u);
		expect_header_error(t, 0, stream, FRAME_MAX_DATA + 1);
	}
	/* each variable type's maximum + 1, header only */
	expect_header_error(FRAME_AUTH, 0, 0, 99 + PROTO_MAX_NAME + 1);
	expect_header_error(FRAME_WELCOME, 0, 0, 9 + PROTO_MAX_NAME + 1);
	expect_header_error(FRAME_ROUTE, 0, 1, 10 + PROTO_MAX_HOST + 1);
	expect_header_error(FRAME_REJECT, 0, 0, 5 + PROTO_MAX_REASON + 1);
	expect_header_error(FRAME_ROUTE_ANSWER, 0, 1, 5 + PROTO_MAX_REASON + 1);
	expect_header_error(FRAME_REFUSE, 0, 1, 5 + PROTO_MAX_REASON + 1);
	expect_header_error(FRAME_GOAWAY, 0, 0, 5 + PROTO_MAX_REASON + 1);
	/* and the exact error text for the common case */
	{
		uint8_t hdr[FRAME_HEADER_LEN];

		frame_put_header(hdr, FRAME_DATA, 0, 1, 70000);
		expect_error(hdr, sizeof(hdr), "DATA payload length exceeds limit 65536");
	}
}

static void test_wrong_fixed_lengths(void)
{
	/* fixed-size payloads with one byte less or more fail from the header */
	expect_header_error(FRAME_HELLO, 0, 0, 33);
	expect_header_error(FRAME_HELLO, 0, 0, 35);
	expect_header_error(FRAME_OPEN, 0, 1, 42);
	expect_header_error(FRAME_OPEN, 0, 1, 44);
	expect_header_error(FRAME_WINDOW, 0, 1, 3);
	expect_header_error(FRAME_WINDOW, 0, 1, 5);
	expect_header_error(FRAME_RST, 0, 1, 0);
	expect_header_error(FRAME_RST, 0, 1, 5);
	expect_header_error(FRAME_PING, 0, 0, 7);
	expect_header_error(FRAME_PONG, 0, 0, 9);
	expect_header_error(FRAME_ACCEPT, 0, 1, 1);
	expect_header_error(FRAME_FIN, 0, 1, 1);
	expect_header_error(FRAME_AUTH, 0, 0, 98);
	expect_header_error(FRAME_WELCOME, 0, 0, 8);
	expect_header_error(FRAME_ROUTE, 0, 1, 9);
	expect_header_error(FRAME_REJECT, 0, 0, 4);
	expect_header_error(FRAME_ROUTE_ANSWER, 0, 1, 0);
	expect_header_error(FRAME_REFUSE, 0, 1, 4);
	expect_header_error(FRAME_GOAWAY, 0, 0, 4);
}

static void test_unknown_types(void)
{
	static const uint8_t types[] = {0, FRAME_TYPE_MAX + 1, 18, 100, 255};
	size_t i;

	for (i = 0; i < sizeof(types); i++) {
		uint8_t buf[FRAME_HEADER_LEN + 4];
		struct frame f = mk(types[i], 1);

		frame_put_header(buf, types[i], 0, 1, 4);
		memset(buf + FRAME_HEADER_LEN, 0, 4);
		expect_error(buf, sizeof(buf), "unknown frame type");
		expect_error(buf, FRAME_HEADER_LEN, "unknown frame type");
		frame_put_header(buf, types[i], 0, 0, 0);
		expect_error(buf, FRAME_HEADER_LEN, "unknown frame type");
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		CHECK(strcmp(frame_type_name(types[i]), "?") == 0);
	}
}

static void test_bad_version(void)
{
	static const uint16_t bad[] = {0, 2, 0x0100, 0x0101, 0xffff};
	const char *err = NULL;
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct frame f = mk(FRAME_HELLO, 0);

		f.u.hello.version = bad[i];
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		CHECK(frame_check(&f, &err) == -1);
		CHECK(strcmp(err, "unsupported protocol version") == 0);
		f.u.hello.version = PROTO_VERSION;
		n = frame_encode(enc, sizeof(enc), &f);
		enc[FRAME_HEADER_LEN] = (uint8_t)(bad[i] >> 8);
		enc[FRAME_HEADER_LEN + 1] = (uint8_t)bad[i];
		expect_error(enc, n, "unsupported protocol version");

		f = mk(FRAME_AUTH, 0);
		f.u.auth.version = bad[i];
		strcpy(f.u.auth.name, "a");
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		f.u.auth.version = PROTO_VERSION;
		n = frame_encode(enc, sizeof(enc), &f);
		enc[FRAME_HEADER_LEN] = (uint8_t)(bad[i] >> 8);
		enc[FRAME_HEADER_LEN + 1] = (uint8_t)bad[i];
		expect_error(enc, n, "unsupported protocol version");
	}
}

static void test_stream_rules(void)
{
	struct frame samples[SAMPLES_MAX];
	size_t ns = sample_frames(samples), i;

	for (i = 0; i < ns; i++) {
		struct frame f = samples[i];
		uint8_t t = f.type;
		int zero = t == FRAME_HELLO || t == FRAME_AUTH || t == FRAME_WELCOME ||
		           t == FRAME_REJECT || t == FRAME_PING || t == FRAME_PONG ||
		           t == FRAME_GOAWAY;
		size_t n;

		CHECK((f.stream == 0) == zero);
		f.stream = zero ? 1 : 0;
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		n = frame_encode(enc, sizeof(enc), &samples[i]);
		CHECK(n > 0);
		enc[5] = zero ? 1 : 0; /* low byte of the stream id */
		if (!zero)
			memset(enc + 2, 0, 4);
		expect_error(enc, n,
		             zero ? "stream id must be 0 for this frame type"
		                  : "stream id 0 not allowed for this frame type");
		/* decided from the header alone */
		expect_error(enc, FRAME_HEADER_LEN, NULL);
	}
}

static void test_flags(void)
{
	struct frame samples[SAMPLES_MAX];
	size_t ns = sample_frames(samples), i;

	for (i = 0; i < ns; i++) {
		struct frame f = samples[i];
		uint8_t bad = f.type == FRAME_OPEN || f.type == FRAME_ROUTE ? 0x02 : 0x01;
		size_t n;

		f.flags |= bad;
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		f.flags = 0x80;
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		n = frame_encode(enc, sizeof(enc), &samples[i]);
		enc[1] |= bad;
		expect_error(enc, n, "frame flags not defined for this type");
		expect_error(enc, FRAME_HEADER_LEN, "frame flags not defined for this type");
	}
}

static void test_bad_strings(void)
{
	static const uint8_t badc[] = {0x00, 0x01, 0x09, 0x0a, 0x1b, 0x1f, 0x7f, 0x80, 0xff};
	struct frame f;
	size_t i;

	for (i = 0; i < sizeof(badc); i++) {
		/* on the wire: AUTH name byte 1 of "abc" (offset 10 + 99) */
		f = mk(FRAME_AUTH, 0);
		f.u.auth.version = PROTO_VERSION;
		strcpy(f.u.auth.name, "abc");
		expect_patched_error(&f, FRAME_HEADER_LEN + 99 + 1, badc[i],
		                     "string contains a non-printable byte");
		/* WELCOME name, REFUSE reason, ROUTE host */
		f = mk(FRAME_WELCOME, 0);
		f.u.welcome.window = 1;
		strcpy(f.u.welcome.name, "abc");
		expect_patched_error(&f, FRAME_HEADER_LEN + 9, badc[i],
		                     "string contains a non-printable byte");
		f = mk(FRAME_REFUSE, 1);
		strcpy(f.u.code.reason, "abc");
		expect_patched_error(&f, FRAME_HEADER_LEN + 5 + 2, badc[i],
		                     "string contains a non-printable byte");
		f = mk(FRAME_ROUTE, 1);
		f.u.route.kind = ROUTE_KIND_HTTP;
		strcpy(f.u.route.host, "abc");
		expect_patched_error(&f, FRAME_HEADER_LEN + 10, badc[i],
		                     "string contains a non-printable byte");

		/* in the struct: encode refuses */
		if (badc[i] == 0)
			continue;
		f = mk(FRAME_GOAWAY, 0);
		strcpy(f.u.code.reason, "a?c");
		f.u.code.reason[1] = (char)badc[i];
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
		f = mk(FRAME_ROUTE, 1);
		f.u.route.kind = ROUTE_KIND_TLS;
		strcpy(f.u.route.host, "x?y");
		f.u.route.host[1] = (char)badc[i];
		CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	}
}

static void test_long_strings(void)
{
	uint8_t buf[FRAME_HEADER_LEN + 512];
	struct frame f;
	size_t n;

	/* not NUL-terminated within the array: encode must not overread */
	f = mk(FRAME_AUTH, 0);
	f.u.auth.version = PROTO_VERSION;
	memset(f.u.auth.name, 'a', sizeof(f.u.auth.name));
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f = mk(FRAME_WELCOME, 0);
	f.u.welcome.window = 1;
	memset(f.u.welcome.name, 'a', sizeof(f.u.welcome.name));
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f = mk(FRAME_REJECT, 0);
	memset(f.u.code.reason, 'a', sizeof(f.u.code.reason));
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f = mk(FRAME_ROUTE, 1);
	f.u.route.kind = ROUTE_KIND_HTTP;
	memset(f.u.route.host, 'a', sizeof(f.u.route.host));
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);

	/* on the wire: AUTH name length byte 64 with 64 bytes is too long */
	memset(buf, 'n', sizeof(buf));
	frame_put_header(buf, FRAME_AUTH, 0, 0, 99 + 63);
	buf[10] = 0;
	buf[11] = PROTO_VERSION;
	buf[10 + 98] = PROTO_MAX_NAME + 1;
	expect_error(buf, FRAME_HEADER_LEN + 99 + 63, "string exceeds its maximum length");
	buf[10 + 98] = 0xff;
	expect_error(buf, FRAME_HEADER_LEN + 99 + 63, "string exceeds its maximum length");
	buf[10 + 98] = PROTO_MAX_NAME;
	CHECK(frame_decode(buf, FRAME_HEADER_LEN + 99 + 63, &f, NULL) == FRAME_HEADER_LEN + 162);

	/* WELCOME name longer than 63 on the wire */
	frame_put_header(buf, FRAME_WELCOME, 0, 0, 9 + 63);
	memset(buf + 10, 0, 8);
	buf[13] = 1;
	buf[18] = 64;
	expect_error(buf, FRAME_HEADER_LEN + 9 + 63, "string exceeds its maximum length");

	/* a host of 254 bytes needs a length the header check refuses already */
	f = mk(FRAME_ROUTE, 1);
	f.u.route.kind = ROUTE_KIND_HTTP;
	str_fill(f.u.route.host, PROTO_MAX_HOST, 'h');
	n = frame_encode(buf, sizeof(buf), &f);
	CHECK(n == FRAME_HEADER_LEN + 10 + PROTO_MAX_HOST);
	buf[9]++;
	buf[19] = 0xfe;
	expect_error(buf, n + 1, "ROUTE payload length must be 10..263");
}

static void test_string_overrun(void)
{
	struct frame f = mk(FRAME_REFUSE, 1);
	size_t n;

	/* string length points past the payload */
	strcpy(f.u.code.reason, "abcd");
	n = frame_encode(enc, sizeof(enc), &f);
	enc[FRAME_HEADER_LEN + 4] = 5;
	expect_error(enc, n, "string length exceeds frame payload");
	enc[FRAME_HEADER_LEN + 4] = 200;
	expect_error(enc, n, "string length exceeds frame payload");
}

static void test_trailing_bytes(void)
{
	struct frame samples[SAMPLES_MAX];
	size_t ns = sample_frames(samples), i;
	uint8_t buf[FRAME_HEADER_LEN + 512];

	for (i = 0; i < ns; i++) {
		uint8_t t = samples[i].type;
		size_t n = frame_encode(buf, sizeof(buf) - 1, &samples[i]);
		uint32_t len = (uint32_t)(n - FRAME_HEADER_LEN) + 1;
		struct frame g;
		ssize_t rc;

		/* one more byte in the payload: an error (DATA/DATAGRAM just get longer) */
		buf[n] = 'z';
		frame_put_header(buf, t, samples[i].flags, samples[i].stream, len);
		rc = decode_exact(buf, n + 1, &g, NULL);
		if (t == FRAME_DATA || t == FRAME_DATAGRAM)
			CHECK(rc == (ssize_t)(n + 1) && g.len == len);
		else
			CHECK(rc == FRAME_ERROR);
	}
	/* string-bearing frames: a shorter string than the length says */
	{
		struct frame f = mk(FRAME_GOAWAY, 0);
		size_t n;

		strcpy(f.u.code.reason, "abc");
		n = frame_encode(enc, sizeof(enc), &f);
		enc[FRAME_HEADER_LEN + 4] = 2;
		expect_error(enc, n, "trailing bytes after frame payload");
		enc[FRAME_HEADER_LEN + 4] = 0;
		expect_error(enc, n, "trailing bytes after frame payload");
	}
}

static void test_route_rules(void)
{
	struct frame f;
	const char *err = NULL;

	f = mk(FRAME_ROUTE, 1);
	f.u.route.kind = 0;
	strcpy(f.u.route.host, "a");
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.route.kind = ROUTE_KIND_MAX + 1;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.route.kind = ROUTE_KIND_HTTP;
	CHECK(frame_encode(enc, sizeof(enc), &f) > 0);
	expect_patched_error(&f, FRAME_HEADER_LEN, 0, "unknown ROUTE kind");
	expect_patched_error(&f, FRAME_HEADER_LEN, 5, "unknown ROUTE kind");
	expect_patched_error(&f, FRAME_HEADER_LEN + 2, 80, "HTTP/TLS ROUTE ports must be 0");
	expect_patched_error(&f, FRAME_HEADER_LEN + 4, 1, "HTTP/TLS ROUTE ports must be 0");
	/* HTTP route re-labelled TCP: host forbidden (and ports 0) */
	expect_patched_error(&f, FRAME_HEADER_LEN, ROUTE_KIND_TCP, NULL);
	f.u.route.port_lo = 80;
	f.u.route.port_hi = 80;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.route.kind = ROUTE_KIND_TCP;
	CHECK(frame_check(&f, &err) == -1);
	CHECK(strcmp(err, "TCP/UDP ROUTE must not carry a host") == 0);

	f = mk(FRAME_ROUTE, 1);
	f.u.route.kind = ROUTE_KIND_TLS;
	CHECK(frame_check(&f, &err) == -1);
	CHECK(strcmp(err, "HTTP/TLS ROUTE needs a host") == 0);

	f = mk(FRAME_ROUTE, 1);
	f.u.route.kind = ROUTE_KIND_UDP;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0); /* port 0 */
	f.u.route.port_lo = 10;
	f.u.route.port_hi = 9;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.route.port_hi = 10;
	CHECK(frame_encode(enc, sizeof(enc), &f) > 0);
	expect_patched_error(&f, FRAME_HEADER_LEN + 4, 9, "TCP/UDP ROUTE port range invalid");
	expect_patched_error(&f, FRAME_HEADER_LEN + 2, 0, "TCP/UDP ROUTE port range invalid");
	f.u.route.port_lo = 0;
	f.u.route.port_hi = 0;
	CHECK(frame_check(&f, &err) == -1);
	CHECK(strcmp(err, "TCP/UDP ROUTE port range invalid") == 0);
}

static void test_open_rules(void)
{
	struct frame f = mk(FRAME_OPEN, 1);

	f.u.open.route = 1;
	f.u.open.kind = ROUTE_KIND_HTTP;
	f.u.open.family = 4;
	f.u.open.dst_family = 4;
	CHECK(frame_encode(enc, sizeof(enc), &f) > 0);
	expect_patched_error(&f, FRAME_HEADER_LEN + 3, 0, "OPEN route id must not be 0");
	expect_patched_error(&f, FRAME_HEADER_LEN + 4, 0, "unknown OPEN kind");
	expect_patched_error(&f, FRAME_HEADER_LEN + 4, 5, "unknown OPEN kind");
	expect_patched_error(&f, FRAME_HEADER_LEN + 5, 5, "OPEN address family must be 0, 4 or 6");
	expect_patched_error(&f, FRAME_HEADER_LEN + 5, 2, "OPEN address family must be 0, 4 or 6");
	expect_patched_error(&f, FRAME_HEADER_LEN + 24, 1, "OPEN address family must be 0, 4 or 6");
	f.u.open.route = 0;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.open.route = 1;
	f.u.open.dst_family = 10;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.open.dst_family = 6;
	f.u.open.kind = 9;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
}

static void test_window_rules(void)
{
	struct frame f = mk(FRAME_WINDOW, 1);

	f.u.window = 0;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.window = FRAME_MAX_WINDOW + 1;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.window = 1;
	expect_patched_error(&f, FRAME_HEADER_LEN + 3, 0, "WINDOW increment out of range");
	expect_patched_error(&f, FRAME_HEADER_LEN, 0x40, "WINDOW increment out of range");
	expect_patched_error(&f, FRAME_HEADER_LEN, 0xff, "WINDOW increment out of range");

	f = mk(FRAME_WELCOME, 0);
	f.u.welcome.window = 0;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.welcome.window = FRAME_MAX_WINDOW + 1;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.welcome.window = 1;
	expect_patched_error(&f, FRAME_HEADER_LEN + 3, 0, "WELCOME window out of range");
	expect_patched_error(&f, FRAME_HEADER_LEN, 0x41, "WELCOME window out of range");
}

static void test_route_answer_codes(void)
{
	struct frame f = mk(FRAME_ROUTE_ANSWER, 1);
	const char *want = "ROUTE_ANSWER status must be ACCEPTED or REFUSED";

	f.u.code.code = 2;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.code.code = 0x100;
	CHECK(frame_encode(enc, sizeof(enc), &f) == 0);
	f.u.code.code = ROUTE_ACCEPTED;
	expect_patched_error(&f, FRAME_HEADER_LEN + 3, 2, want);
	expect_patched_error(&f, FRAME_HEADER_LEN, 1, want);
}

static void test_concatenated(void)
{
	static uint8_t buf[8192];
	struct frame samples[SAMPLES_MAX], g;
	size_t ns = sample_frames(samples), i, off = 0, sizes[SAMPLES_MAX];
	const char *err = NULL;
	ssize_t rc;

	for (i = 0; i < ns; i++) {
		sizes[i] = frame_encode(buf + off, sizeof(buf) - off, &samples[i]);
		CHECK(sizes[i] > 0);
		off += sizes[i];
	}
	/* a partial frame at the end, as when a read stops mid-frame */
	memcpy(buf + off, buf, 5);
	off += 5;

	{
		size_t total = off;

		off = 0;
		for (i = 0; i < ns; i++) {
			rc = decode_exact(buf + off, total - off, &g, &err);
			CHECK(rc == (ssize_t)sizes[i]);
			if (rc <= 0)
				return;
			CHECK(g.type == samples[i].type && g.stream == samples[i].stream);
			off += (size_t)rc;
		}
		CHECK(decode_exact(buf + off, total - off, &g, &err) == FRAME_INCOMPLETE);
		CHECK(total - off == 5);
	}

	/* a bad frame in the middle stops the sequence with an error */
	off = 0;
	off += frame_encode(buf + off, sizeof(buf) - off, &samples[0]);
	frame_put_header(buf + off, 0, 0, 0, 0);
	rc = decode_exact(buf, off + FRAME_HEADER_LEN, &g, &err);
	CHECK(rc == (ssize_t)off);
	rc = decode_exact(buf + off, FRAME_HEADER_LEN, &g, &err);
	CHECK(rc == FRAME_ERROR);
}

static void test_encode_cap(void)
{
	struct frame samples[SAMPLES_MAX];
	size_t ns = sample_frames(samples), i;
	uint8_t buf[FRAME_HEADER_LEN + 512];

	for (i = 0; i < ns; i++) {
		size_t n = frame_encode(buf, sizeof(buf), &samples[i]);

		CHECK(n >= FRAME_HEADER_LEN);
		CHECK(frame_encode(buf, n - 1, &samples[i]) == 0);
		CHECK(frame_encode(buf, FRAME_HEADER_LEN - 1, &samples[i]) == 0);
		CHECK(frame_encode(buf, 0, &samples[i]) == 0);
		CHECK(frame_encode(NULL, 0, &samples[i]) == 0);
		CHECK(frame_encode(buf, n, &samples[i]) == n);
	}
	/* a too-small cap never writes */
	{
		struct frame f = mk(FRAME_DATA, 1);
		uint8_t small[32];

		memset(small, 0xaa, sizeof(small));
		f.payload = (const uint8_t *)"0123456789";
		f.len = 10;
		CHECK(frame_encode(small, 19, &f) == 0);
		CHECK(small[0] == 0xaa);
	}
}

static void test_encode_in_place(void)
{
	struct frame f = mk(FRAME_DATA, 3), g;
	uint8_t buf[FRAME_HEADER_LEN + 5];
	const char *err = NULL;

	memcpy(buf + FRAME_HEADER_LEN, "world", 5);
	f.payload = buf + FRAME_HEADER_LEN;
	f.len = 5;
	CHECK(frame_encode(buf, sizeof(buf), &f) == sizeof(buf));
	CHECK(decode_exact(buf, sizeof(buf), &g, &err) == sizeof(buf));
	CHECK(g.len == 5 && memcmp(g.payload, "world", 5) == 0);
}

static void test_put_header(void)
{
	uint8_t buf[FRAME_HEADER_LEN + 3];
	struct frame g;
	const char *err = NULL;
	static const uint8_t want[] = {10, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 3};

	frame_put_header(buf, FRAME_DATA, 0, 0x12345678u, 3);
	CHECK(memcmp(buf, want, sizeof(want)) == 0);
	memcpy(buf + FRAME_HEADER_LEN, "abc", 3);
	CHECK(decode_exact(buf, sizeof(buf), &g, &err) == sizeof(buf));
	CHECK(g.type == FRAME_DATA && g.stream == 0x12345678u && g.len == 3);
}

static void test_type_names(void)
{
	static const char *const names[] = {"?",     "HELLO",        "AUTH",  "WELCOME", "REJECT",
	                                    "ROUTE", "ROUTE_ANSWER", "OPEN",  "ACCEPT",  "REFUSE",
	                                    "DATA",  "WINDOW",       "FIN",   "RST",     "DATAGRAM",
	                                    "PING",  "PONG",         "GOAWAY"};
	unsigned t;

	for (t = 0; t <= FRAME_TYPE_MAX; t++)
		CHECK(strcmp(frame_type_name((uint8_t)t), names[t]) == 0);
	CHECK(strcmp(frame_type_name(18), "?") == 0);
	CHECK(strcmp(frame_type_name(255), "?") == 0);
}

static void test_auth_message(void)
{
	uint8_t out[PROTO_AUTH_MSG_MAX + 8], ch[PROTO_CHALLENGE_LEN], pk[PROTO_PUBKEY_LEN];
	char name[PROTO_MAX_NAME + 2];
	size_t n;

	fill(ch, sizeof(ch), 11);
	fill(pk, sizeof(pk), 22);
	memset(out, 0xee, sizeof(out));
	n = proto_auth_message(out, PROTO_VERSION, ch, pk, "nas");
	CHECK(n == 15 + 2 + 32 + 32 + 1 + 3);
	CHECK(memcmp(out, "relais-auth-v1\0", 15) == 0);
	CHECK(out[15] == 0 && out[16] == PROTO_VERSION);
	CHECK(memcmp(out + 17, ch, 32) == 0);
	CHECK(memcmp(out + 49, pk, 32) == 0);
	CHECK(out[81] == 3 && memcmp(out + 82, "nas", 3) == 0);
	CHECK(out[n] == 0xee);

	CHECK(proto_auth_message(out, 0x0203, ch, pk, "") == 82);
	CHECK(out[15] == 2 && out[16] == 3 && out[81] == 0);
	CHECK(proto_auth_message(out, PROTO_VERSION, ch, pk, NULL) == 82);

	str_fill(name, PROTO_MAX_NAME, 'q');
	memset(out, 0xee, sizeof(out));
	CHECK(proto_auth_message(out, PROTO_VERSION, ch, pk, name) == PROTO_AUTH_MSG_MAX);
	CHECK(out[PROTO_AUTH_MSG_MAX] == 0xee);
	str_fill(name, PROTO_MAX_NAME + 1, 'q');
	CHECK(proto_auth_message(out, PROTO_VERSION, ch, pk, name) == 0);

	/* a different name or challenge gives a different message */
	{
		uint8_t a[PROTO_AUTH_MSG_MAX], b[PROTO_AUTH_MSG_MAX];
		size_t na = proto_auth_message(a, PROTO_VERSION, ch, pk, "ab");
		size_t nb = proto_auth_message(b, PROTO_VERSION, ch, pk, "ab ");

		CHECK(na != nb || memcmp(a, b, na) != 0);
	}
}

static void test_null_err_and_incomplete_header(void)
{
	struct frame f;
	uint8_t hdr[FRAME_HEADER_LEN];

	CHECK(frame_decode(NULL, 0, &f, NULL) == FRAME_INCOMPLETE);
	frame_put_header(hdr, 200, 0, 0, 0);
	CHECK(frame_decode(hdr, 9, &f, NULL) == FRAME_INCOMPLETE);
	CHECK(frame_decode(hdr, 10, &f, NULL) == FRAME_ERROR);
	/* on error the header fields are left in *f for the log line */
	CHECK(f.type == 200);
}

int main(void)
{
	RUN(test_hello_roundtrip);
	RUN(test_auth_roundtrip);
	RUN(test_welcome_roundtrip);
	RUN(test_code_frames_roundtrip);
	RUN(test_route_roundtrip);
	RUN(test_route_answer_roundtrip);
	RUN(test_open_roundtrip);
	RUN(test_empty_frames_roundtrip);
	RUN(test_data_roundtrip);
	RUN(test_window_roundtrip);
	RUN(test_rst_roundtrip);
	RUN(test_ping_pong_roundtrip);
	RUN(test_golden_bytes);
	RUN(test_truncation_every_offset);
	RUN(test_truncation_big_data);
	RUN(test_oversize_lengths);
	RUN(test_wrong_fixed_lengths);
	RUN(test_unknown_types);
	RUN(test_bad_version);
	RUN(test_stream_rules);
	RUN(test_flags);
	RUN(test_bad_strings);
	RUN(test_long_strings);
	RUN(test_string_overrun);
	RUN(test_trailing_bytes);
	RUN(test_route_rules);
	RUN(test_open_rules);
	RUN(test_window_rules);
	RUN(test_route_answer_codes);
	RUN(test_concatenated);
	RUN(test_encode_cap);
	RUN(test_encode_in_place);
	RUN(test_put_header);
	RUN(test_type_names);
	RUN(test_auth_message);
	RUN(test_null_err_and_incomplete_header);
	UNIT_END();
}
