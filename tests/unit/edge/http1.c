/*
 * tests/unit/edge/http1.c - unit tests for edge/http1.c.
 */
#include "edge/http1.h"
#include "tests/unit/unit.h"

#include <stdlib.h>

#define MAX_HEAD 8192

static struct http1_head H; /* large: keep it off the stack */

static ssize_t preq(const char *s, int *st)
{
	const char *err = NULL;
	ssize_t r;

	*st = 0;
	r = http1_parse_request(s, strlen(s), MAX_HEAD, &H, st, &err);
	if (r < 0 && !err)
		return -100; /* errors must carry a reason */
	return r;
}

static int req_status(const char *s)
{
	int st;
	ssize_t r = preq(s, &st);

	if (r > 0)
		return 0;
	if (r == 0)
		return 1;
	return st;
}

static ssize_t presp(const char *s, int *st)
{
	const char *err = NULL;

	*st = 0;
	return http1_parse_response(s, strlen(s), MAX_HEAD, &H, st, &err);
}

static int span_is(const char *p, size_t n, const char *lit)
{
	return p && n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* Does out[0..n) contain lit? */
static int has(const char *out, ssize_t n, const char *lit)
{
	return n > 0 && memmem(out, (size_t)n, lit, strlen(lit)) != NULL;
}

/* ------------------------------------------------------------- requests */

static void test_get(void)
{
	const char *s = "GET /index.html?q=1 HTTP/1.1\r\n"
	                "Host: example.com\r\n"
	                "User-Agent:  curl/8.0 \t\r\n"
	                "Accept:*/*\r\n"
	                "X-Empty:\r\n"
	                "\r\n";
	int st;
	ssize_t r = preq(s, &st);

	CHECK(r == (ssize_t)strlen(s));
	CHECK(H.head_len == strlen(s));
	CHECK(span_is(H.method, H.method_len, "GET"));
	CHECK(span_is(H.target, H.target_len, "/index.html?q=1"));
	CHECK(H.minor == 1);
	CHECK(H.nheaders == 4);
	CHECK(span_is(H.headers[0].name, H.headers[0].name_len, "Host"));
	CHECK(span_is(H.headers[0].value, H.headers[0].value_len, "example.com"));
	CHECK(span_is(H.headers[1].value, H.headers[1].value_len, "curl/8.0"));
	CHECK(span_is(H.headers[2].value, H.headers[2].value_len, "*/*"));
	CHECK(H.headers[3].value_len == 0);
	CHECK(http1_find(&H, "user-agent") == &H.headers[1]);
	CHECK(http1_find(&H, "Cookie") == NULL);
	CHECK(http1_keep_alive(&H) == 1);
}

static void test_post_length(void)
{
	const char *s = "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
	enum http1_body kind;
	uint64_t len;
	int st;
	const char *err;
	ssize_t r = preq(s, &st);

	CHECK(r == (ssize_t)strlen(s) - 5);
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_LENGTH && len == 5);

	/* Identical duplicates are one length (RFC 9110 §8.6). */
	CHECK(preq("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\nContent-length: 7\r\n\r\n",
	           &st) > 0);
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_LENGTH && len == 7);
	/* At most 2^63-1 (a signed 64-bit length elsewhere sees the same). */
	CHECK(preq("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
	           &st) > 0);
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_LENGTH && len == INT64_MAX);
	CHECK(preq("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n",
	           &st) == -1 &&
	      st == 400);
	CHECK(preq("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
	           &st) == -1 &&
	      st == 400);
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &st) > 0);
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_NONE);
}

static void test_chunked_request(void)
{
	enum http1_body kind;
	uint64_t len;
	int st;
	const char *err;

	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", &st) > 0);
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_CHUNKED);
	/* Empty list elements are skipped (RFC 9110 §5.6.1). */
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n", &st) > 0);
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_CHUNKED);
}

static void test_target_forms(void)
{
	int st;
	char host[HTTP1_ROUTE_HOST_MAX];

	CHECK(preq("GET http://Example.COM:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n", &st) > 0);
	CHECK(span_is(H.target, H.target_len, "http://Example.COM:8080/x?y"));
	CHECK(http1_route_host(&H, host, sizeof(host)) == 0);
	CHECK(strcmp(host, "example.com") == 0);
	CHECK(req_status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
	CHECK(req_status("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n") == 0);
	CHECK(req_status("GET * HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
	CHECK(req_status("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
	CHECK(req_status("GET index.html HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
	CHECK(req_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
}

static void test_line_endings(void)
{
	const char *s = "GET / HTTP/1.0\nHost: a\nX: b\r\n\n";
	int st;

	CHECK(preq(s, &st) == (ssize_t)strlen(s));
	CHECK(H.minor == 0 && H.nheaders == 2);
	CHECK(span_is(H.headers[0].value, H.headers[0].value_len, "a"));
	CHECK(http1_keep_alive(&H) == 0);

	/* Empty lines before the request line are skipped and counted in head_len. */
	s = "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK(preq(s, &st) == (ssize_t)strlen(s));
	CHECK(span_is(H.method, H.method_len, "GET"));
	CHECK(req_status("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
}

static void test_pipelined(void)
{
	const char *s = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
	                "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
	                "GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	size_t off = 0, total = strlen(s);
	const char *targets[] = {"/a", "/b", "/c"};
	int i, st;
	const char *err;

	for (i = 0; i < 3; i++) {
		enum http1_body kind;
		uint64_t len;
		ssize_t r = http1_parse_request(s + off, total - off, MAX_HEAD, &H, &st, &err);

		CHECK(r > 0);
		if (r <= 0)
			return;
		CHECK(span_is(H.target, H.target_len, targets[i]));
		CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
		off += (size_t)r + (kind == HTTP1_BODY_LENGTH ? len : 0);
	}
	CHECK(off == total);
	CHECK(http1_keep_alive(&H) == 0);
}

static void test_truncation(void)
{
	const char *heads[] = {
	    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	    "\r\nPOST /x?y=z HTTP/1.0\r\nContent-Length: 10\r\nX-A:  b c \r\n\r\n",
	    "GET / HTTP/1.1\nHost: a\n\n",
	    "GET http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	size_t k, i;

	for (k = 0; k < sizeof(heads) / sizeof(heads[0]); k++) {
		size_t n = strlen(heads[k]);
		int st = 0;
		const char *err = NULL;

		CHECK(http1_parse_request(heads[k], n, MAX_HEAD, &H, &st, &err) == (ssize_t)n);
		for (i = 0; i < n; i++) {
			ssize_t r = http1_parse_request(heads[k], i, MAX_HEAD, &H, &st, &err);
			if (r != HTTP1_INCOMPLETE) {
				fprintf(stderr, "  head %zu cut at %zu: %zd\n", k, i, r);
				CHECK(r == HTTP1_INCOMPLETE);
			}
		}
	}
	/* Same for a response head. */
	{
		const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
		size_t n = strlen(s);
		int st;
		const char *err;

		CHECK(http1_parse_response(s, n, MAX_HEAD, &H, &st, &err) == (ssize_t)n);
		for (i = 0; i < n; i++)
			CHECK(http1_parse_response(s, i, MAX_HEAD, &H, &st, &err) ==
			      HTTP1_INCOMPLETE);
	}
}

static void test_oversize(void)
{
	static char big[MAX_HEAD + 64];
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(s);
	int st = 0;
	const char *err = NULL;

	/* A head that does not end within max_head is 431 as soon as len reaches it. */
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'a', sizeof(big) - 19);
	CHECK(http1_parse_request(big, MAX_HEAD - 1, MAX_HEAD, &H, &st, &err) == HTTP1_INCOMPLETE);
	CHECK(http1_parse_request(big, MAX_HEAD, MAX_HEAD, &H, &st, &err) == HTTP1_ERROR);
	CHECK(st == 431 && err != NULL);
	st = 0;
	CHECK(http1_parse_request(big, sizeof(big), MAX_HEAD, &H, &st, &err) == HTTP1_ERROR);
	CHECK(st == 431);

	/* ... and 414 while the request line itself has not ended. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	st = 0;
	CHECK(http1_parse_request(big, MAX_HEAD, MAX_HEAD, &H, &st, &err) == HTTP1_ERROR);
	CHECK(st == 414 && strcmp(err, "request line too long") == 0);

	/* HTTP/1.2 is taken as 1.1 (RFC 9110 §2.5); 2.0 and 0.9 are 505. */
	{
		static const char v12[] = "GET / HTTP/1.2\r\nHost: a\r\n\r\n";

		CHECK(http1_parse_request(v12, sizeof(v12) - 1, MAX_HEAD, &H, &st, &err) ==
		          (ssize_t)sizeof(v12) - 1 &&
		      H.minor == 1);
	}

	/* A complete head exactly max_head long fits; one byte less does not. */
	CHECK(http1_parse_request(s, n, n, &H, &st, &err) == (ssize_t)n);
	st = 0;
	CHECK(http1_parse_request(s, n, n - 1, &H, &st, &err) == HTTP1_ERROR);
	CHECK(st == 431);
	st = 0;
	CHECK(http1_parse_response("HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25, 10, &H, &st, &err) ==
	      HTTP1_ERROR);
	CHECK(st == 502);
}

static void test_too_many_headers(void)
{
	static char buf[4096];
	size_t off;
	int i, st = 0;
	const char *err;

	off = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP1_MAX_HEADERS; i++)
		off += (size_t)sprintf(buf + off, "H%d: v\r\n", i);
	strcpy(buf + off, "\r\n");
	CHECK(http1_parse_request(buf, off + 2, MAX_HEAD, &H, &st, &err) == (ssize_t)off + 2);
	CHECK(H.nheaders == HTTP1_MAX_HEADERS);
	off += (size_t)sprintf(buf + off, "Extra: v\r\n");
	strcpy(buf + off, "\r\n");
	CHECK(http1_parse_request(buf, off + 2, MAX_HEAD, &H, &st, &err) == HTTP1_ERROR);
	CHECK(st == 431);
}

static void test_malformed(void)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400}, /* space before colon */
	    {"head / HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* lower-case method */
	    {"Get / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400}, /* obs-fold */
	    {"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},      /* ws before 1st field */
	    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400}, /* bare CR */
	    {"GET / HTTP/1.1\rHost: a\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
	    {"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400}, /* DEL */
	    {"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 400}, /* CTL */
	    {"GET / HTTP/1.1\r\n: a\r\n\r\n", 400},      /* empty name */
	    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nBad[Name]: a\r\n\r\n", 400},
	    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* double space */
	    {"GET / x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
	    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	    {"GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	    {"GET / HTTP/1.11\r\nHost: a\r\n\r\n", 400},
	    {"GET / HTTP/1\r\nHost: a\r\n\r\n", 400},
	    {"GET /\r\n\r\n", 400}, /* HTTP/0.9 */
	    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
	    {"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400}, /* bad CL */
	    {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400},
	    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	     400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501}, /* unsupported */
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
	};
	size_t i;
	static const char nul_value[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	static const char nul_target[] = "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n";
	int st = 0;
	const char *err = NULL;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = req_status(cases[i].req);
		if (got != cases[i].status) {
			fprintf(stderr, "  case %zu: got %d want %d\n", i, got, cases[i].status);
			CHECK(got == cases[i].status);
		}
	}
	CHECK(http1_parse_request(nul_value, sizeof(nul_value) - 1, MAX_HEAD, &H, &st, &err) ==
	      HTTP1_ERROR);
	CHECK(st == 400);
	st = 0;
	CHECK(http1_parse_request(nul_target, sizeof(nul_target) - 1, MAX_HEAD, &H, &st, &err) ==
	      HTTP1_ERROR);
	CHECK(st == 400);
}

static void test_request_body_direct(void)
{
	/* http1_request_body() on a head built by hand reports the same errors. */
	enum http1_body kind;
	uint64_t len;
	int st = 0;
	const char *err = NULL;

	memset(&H, 0, sizeof(H));
	H.minor = 1;
	H.nheaders = 2;
	H.headers[0] = (struct http1_header){"Content-Length", 14, "4", 1};
	H.headers[1] = (struct http1_header){"Transfer-Encoding", 17, "chunked", 7};
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == -1);
	CHECK(st == 400 && err != NULL);
	H.nheaders = 1;
	CHECK(http1_request_body(&H, &kind, &len, &st, &err) == 0);
	CHECK(kind == HTTP1_BODY_LENGTH && len == 4);
}

/* ------------------------------------------------------------ responses */

static void test_response_parse(void)
{
	int st;
	const char *s = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

	CHECK(presp(s, &st) == (ssize_t)strlen(s));
	CHECK(H.status == 404 && H.minor == 1);
	CHECK(span_is(H.reason, H.reason_len, "Not Found"));
	CHECK(H.method == NULL);
	CHECK(presp("HTTP/1.0 200 \r\n\r\n", &st) > 0);
	CHECK(H.status == 200 && H.reason_len == 0 && H.minor == 0);
	CHECK(presp("HTTP/1.1 204\r\n\r\n", &st) > 0);
	CHECK(H.status == 204 && H.reason_len == 0);

	CHECK(presp("HTTP/1.1 99 Odd\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("HTTP/1.1 600 Odd\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("HTTP/1.1 2000 OK\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("HTTP/2 200 OK\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("HTTP/2.0 200 OK\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("HTTP/1.1 200 O\rK\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
	CHECK(presp("ICY 200 OK\r\n\r\n", &st) == HTTP1_ERROR && st == 502);
}

static int resp_kind(const char *s, int head, int connect, uint64_t *len)
{
	enum http1_body kind;
	const char *err = NULL;
	int st;

	if (presp(s, &st) <= 0)
		return -2;
	if (http1_response_body(&H, head, connect, &kind, len, &err) < 0)
		return err ? -1 : -3;
	return (int)kind;
}

static void test_response_framing(void)
{
	uint64_t len = 99;

	CHECK(resp_kind("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 1, 0, &len) ==
	      HTTP1_BODY_NONE);
	CHECK(resp_kind("HTTP/1.1 204 No Content\r\n\r\n", 0, 0, &len) == HTTP1_BODY_NONE);
	CHECK(resp_kind("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 0, 0, &len) ==
	      HTTP1_BODY_NONE);
	CHECK(resp_kind("HTTP/1.1 100 Continue\r\n\r\n", 0, 0, &len) == HTTP1_BODY_NONE);
	CHECK(resp_kind("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 0, 0, &len) ==
	      HTTP1_BODY_NONE);
	CHECK(resp_kind("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 0, 0,
	                &len) == HTTP1_BODY_TUNNEL);
	CHECK(resp_kind("HTTP/1.1 200 Connection Established\r\n\r\n", 0, 1, &len) ==
	      HTTP1_BODY_TUNNEL);
	CHECK(resp_kind("HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", 0, 1, &len) ==
	      HTTP1_BODY_LENGTH);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, &len) ==
	      HTTP1_BODY_CHUNKED);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, 0,
	                &len) == HTTP1_BODY_CHUNKED);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 0, &len) ==
	      HTTP1_BODY_CLOSE);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", 0, 0, &len) ==
	      HTTP1_BODY_LENGTH);
	CHECK(len == 42);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, &len) ==
	      HTTP1_BODY_LENGTH);
	CHECK(len == 0);
	CHECK(resp_kind("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", 0, 0, &len) == HTTP1_BODY_CLOSE);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\n\r\n", 0, 0, &len) == HTTP1_BODY_CLOSE);

	/* Errors: the edge answers 502. */
	CHECK(
	    resp_kind("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	              0, 0, &len) == -1);
	CHECK(resp_kind("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, &len) == -1);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", 0, 0, &len) == -1);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 0, 0, &len) == -1);
	CHECK(resp_kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0, 0,
	                &len) == -1);
}

static void test_tokens(void)
{
	int st;

	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive , Upgrade\r\n"
	           "Connection: ,X-Foo,\r\nUpgrade: websocket\r\n\r\n",
	           &st) > 0);
	CHECK(http1_has_token(&H, "connection", "upgrade"));
	CHECK(http1_has_token(&H, "Connection", "KEEP-ALIVE"));
	CHECK(http1_has_token(&H, "Connection", "x-foo"));
	CHECK(!http1_has_token(&H, "Connection", "close"));
	CHECK(!http1_has_token(&H, "Connection", "keep"));
	CHECK(!http1_has_token(&H, "Accept", "x"));
	CHECK(http1_is_upgrade(&H));
	CHECK(http1_keep_alive(&H));

	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", &st) > 0);
	CHECK(!http1_keep_alive(&H));
	CHECK(preq("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &st) > 0);
	CHECK(http1_keep_alive(&H));
	CHECK(preq("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", &st) > 0);
	CHECK(!http1_is_upgrade(&H)); /* Upgrade is ignored in HTTP/1.0 */
	CHECK(!http1_keep_alive(&H));
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
	           &st) > 0);
	CHECK(!http1_is_upgrade(&H)); /* h2c would bypass the edge's rewriting */
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
	           "Upgrade: foo/2, H2C/1.0\r\n\r\n",
	           &st) > 0);
	CHECK(!http1_is_upgrade(&H));
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
	           "Upgrade: h2c\r\n\r\n",
	           &st) > 0);
	CHECK(!http1_is_upgrade(&H));
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
	           "Upgrade: h2c-like, h2, TLS/1.2\r\n\r\n",
	           &st) > 0);
	CHECK(http1_is_upgrade(&H));
	CHECK(presp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &st) > 0);
	CHECK(!http1_keep_alive(&H));
	CHECK(presp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", &st) > 0);
	CHECK(http1_keep_alive(&H));
}

/* ------------------------------------------------------- chunked tracker */

/* Feed s whole and then one byte at a time; both must agree.  Returns consumed or -1. */
static ssize_t chunk_both(const char *s, size_t n, int *done)
{
	struct http1_chunked c;
	const char *err = NULL;
	ssize_t whole, bytes = 0;
	int d1 = 0, d2 = 0;
	size_t i;

	http1_chunked_init(&c);
	whole = http1_chunked_feed(&c, s, n, &d1, &err);
	CHECK(whole < 0 ? err != NULL : 1);

	http1_chunked_init(&c);
	for (i = 0; i < n && !d2; i++) {
		ssize_t r = http1_chunked_feed(&c, s + i, 1, &d2, &err);
		if (r < 0) {
			bytes = -1;
			break;
		}
		bytes += r;
	}
	if (whole != bytes || d1 != d2) {
		fprintf(stderr, "  whole %zd/%d vs bytes %zd/%d for \"%.40s\"\n", whole, d1, bytes,
		        d2, s);
		CHECK(whole == bytes && d1 == d2);
	}
	*done = d1;
	return whole;
}

struct sink {
	char *buf;
	size_t len, cap;
};

/* on_data: append to a struct sink */
static void collect(void *arg, const char *p, size_t n)
{
	struct sink *w = arg;

	if (w->len + n <= w->cap) {
		memcpy(w->buf + w->len, p, n);
		w->len += n;
	}
}

static ssize_t chunk_str(const char *s, int *done)
{
	return chunk_both(s, strlen(s), done);
}

static void test_chunked_basic(void)
{
	const char *s = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
	struct http1_chunked c;
	const char *err;
	int done;

	CHECK(chunk_str(s, &done) == (ssize_t)strlen(s) && done == 1);
	http1_chunked_init(&c);
	CHECK(http1_chunked_feed(&c, s, strlen(s), &done, &err) == (ssize_t)strlen(s));
	CHECK(c.total == 31);
	/* After the end nothing more belongs to the body. */
	CHECK(http1_chunked_feed(&c, "GET", 3, &done, &err) == 0 && done == 1);

	/* Incomplete bodies consume everything and are not done. */
	CHECK(chunk_str("5\r\nhel", &done) == 6 && done == 0);
	CHECK(chunk_str("0\r\n", &done) == 3 && done == 0);
	CHECK(chunk_str("0\r\n\r", &done) == 4 && done == 0);
	CHECK(chunk_str("000\r\n\r\n", &done) == 7 && done == 1);
	CHECK(chunk_str("fFfF\r\n", &done) == 6 && done == 0);
}

static void test_chunked_ext_trailers(void)
{
	const char *s = "4;name=value\r\nWiki\r\n"
	                "5 ; a ; b = \"q\\\"uo;ted\" ;c=d\r\npedia\r\n"
	                "E;ext=\"\"\r\n in\r\n\r\nchunks.\r\n"
	                "0;last\r\n"
	                "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
	                "X-Checksum:abc \r\n"
	                "\r\n";
	int done;
	size_t n = strlen(s);
	struct http1_chunked c;
	const char *err;

	CHECK(chunk_str(s, &done) == (ssize_t)n && done == 1);
	http1_chunked_init(&c);
	CHECK(http1_chunked_feed(&c, s, n, &done, &err) == (ssize_t)n);
	CHECK(c.total == 4 + 5 + 14);
	/* The trailer field lines, for a caller that drops them. */
	CHECK(c.trailer_len == n - 2 - (size_t)(strstr(s, "Expires") - s));
	CHECK(c.trailer_off == (size_t)(strstr(s, "Expires") - s));
}

static void test_chunked_trailer_span(void)
{
	const char *s = "3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
	const char *fields = strstr(s, "X-A");
	size_t n = strlen(s), i, got = 0;
	struct http1_chunked c;
	const char *err;
	int done = 0;

	/* Byte by byte: exactly the field lines are marked, never the final CRLF. */
	http1_chunked_init(&c);
	for (i = 0; i < n; i++) {
		CHECK(http1_chunked_feed(&c, s + i, 1, &done, &err) == 1);
		if (c.trailer_len) {
			CHECK(c.trailer_off == 0 && c.trailer_len == 1);
			CHECK(s + i >= fields && s + i < s + n - 2);
			got++;
		}
	}
	CHECK(done && got == n - 2 - (size_t)(fields - s));
	/* No trailers: nothing marked. */
	http1_chunked_init(&c);
	CHECK(http1_chunked_feed(&c, "0\r\n\r\n", 5, &done, &err) == 5 && done);
	CHECK(c.trailer_len == 0);
}

static void test_chunked_pipelined(void)
{
	const char *s = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	                "3\r\nabc\r\n0\r\n\r\n"
	                "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(s);
	struct http1_chunked c;
	const char *err;
	int st, done;
	ssize_t r, b;

	r = http1_parse_request(s, n, MAX_HEAD, &H, &st, &err);
	CHECK(r > 0);
	if (r <= 0)
		return;
	http1_chunked_init(&c);
	b = http1_chunked_feed(&c, s + r, n - (size_t)r, &done, &err);
	CHECK(b == 13 && done == 1);
	CHECK(chunk_both(s + r, n - (size_t)r, &done) == 13 && done == 1);
	r = http1_parse_request(s + r + b, n - (size_t)(r + b), MAX_HEAD, &H, &st, &err);
	CHECK(r > 0);
	CHECK(span_is(H.target, H.target_len, "/next"));
}

static void test_chunked_malformed(void)
{
	static const char *bad[] = {
	    "\r\n",  /* no size */
	    "g\r\n", /* not hex */
	    "-5\r\n",
	    "0x5\r\n",
	    " 5\r\n",
	    "5 \r\n",                /* trailing whitespace */
	    "5\nhello\r\n0\r\n\r\n", /* bare LF */
	    "5\r\r\n",
	    "5;\r\n", /* empty extension name */
	    "5;a=\r\n",
	    "5;a b\r\n",
	    "5;a=\"x\r\n", /* unterminated quote */
	    "5;a=\"x\"y\r\n",
	    "5;a=\"\x01\"\r\n",
	    "5;a\n",
	    "5\r\nhelloX\r\n", /* data longer than the size */
	    "5\r\nhello\n0\r\n\r\n",
	    "5\r\nhello\r\r\n",
	    "0\r\n\n", /* bare LF ending */
	    "0\r\n\r\r",
	    "0\r\nX: y\n\r\n",
	    "0\r\n y\r\n\r\n", /* obs-fold in trailers */
	    "0\r\nX : y\r\n\r\n",
	    "0\r\nX: a\x01\r\n\r\n",
	    "0\r\nNoColon\r\n\r\n",
	    "10000000000000000\r\n", /* 2^64 */
	    "ffffffffffffffff0\r\n",
	};
	size_t i;
	int done;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ssize_t r = chunk_str(bad[i], &done);
		if (r != -1) {
			fprintf(stderr, "  chunked case %zu accepted (%zd)\n", i, r);
			CHECK(r == -1);
		}
	}
	/* The largest size (2^63-1, as Content-Length) still parses; its data
	 * is merely incomplete.  One more does not. */
	CHECK(chunk_str("7fffffffffffffff\r\nab", &done) == 20 && done == 0);
	CHECK(chunk_str("8000000000000000\r\nab", &done) == -1);
	CHECK(chunk_str("ffffffffffffffff\r\nab", &done) == -1);
	/* Total payload over 2^64 fails at the size line. */
	{
		struct http1_chunked c;
		const char *err;

		http1_chunked_init(&c);
		CHECK(http1_chunked_feed(&c, "1\r\nx\r\n", 6, &done, &err) == 6);
		CHECK(http1_chunked_feed(&c, "7fffffffffffffff\r\n", 18, &done, &err) == -1);
		/* A failed tracker stays failed. */
		CHECK(http1_chunked_feed(&c, "0\r\n\r\n", 5, &done, &err) == -1);
	}
}

static void test_chunked_limits(void)
{
	static char buf[HTTP1_CHUNK_TRAILER_MAX + 64];
	int done;
	size_t n;

	/* Size line: 4096 bytes incl. CRLF passes, 4097 fails. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "1;x=", 4);
	memset(buf + 4, 'a', HTTP1_CHUNK_LINE_MAX - 6);
	memcpy(buf + HTTP1_CHUNK_LINE_MAX - 2, "\r\nZ\r\n0\r\n\r\n", 10);
	n = HTTP1_CHUNK_LINE_MAX + 8;
	CHECK(chunk_both(buf, n, &done) == (ssize_t)n && done == 1);
	memset(buf + 4, 'a', HTTP1_CHUNK_LINE_MAX - 5);
	memcpy(buf + HTTP1_CHUNK_LINE_MAX - 1, "\r\nZ\r\n0\r\n\r\n", 10);
	CHECK(chunk_both(buf, n + 1, &done) == -1);

	/* Trailer section: 8192 bytes incl. the final CRLF passes, one more fails. */
	memcpy(buf, "0\r\nX: ", 6);
	memset(buf + 6, 'v', HTTP1_CHUNK_TRAILER_MAX - 7);
	memcpy(buf + HTTP1_CHUNK_TRAILER_MAX - 1, "\r\n\r\n", 4);
	n = HTTP1_CHUNK_TRAILER_MAX + 3;
	CHECK(chunk_both(buf, n, &done) == (ssize_t)n && done == 1);
	memset(buf + 6, 'v', HTTP1_CHUNK_TRAILER_MAX - 6);
	memcpy(buf + HTTP1_CHUNK_TRAILER_MAX, "\r\n\r\n", 4);
	CHECK(chunk_both(buf, n + 1, &done) == -1);
}

/* ------------------------------------------------------------- rewriting */

static const struct http1_forward FW = {"203.0.113.7", 1, "example.com", 0, 0};

static ssize_t rewrite(const char *req, const struct http1_forward *fw, char *out, size_t cap)
{
	int st;

	if (preq(req, &st) <= 0)
		return -2;
	return http1_write_request(&H, fw, out, cap);
}

static void test_rewrite_hop_by_hop(void)
{
	const char *req = "POST /x HTTP/1.1\r\n"
	                  "Host: Example.com:8080\r\n"
	                  "Connection: keep-alive, X-Secret, Content-Length, Host\r\n"
	                  "Keep-Alive: timeout=5\r\n"
	                  "Proxy-Connection: keep-alive\r\n"
	                  "TE: trailers\r\n"
	                  "Trailer: Expires\r\n"
	                  "Upgrade: websocket\r\n"
	                  "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
	                  "X-Secret: 1\r\n"
	                  "X-Real-IP: 6.6.6.6\r\n"
	                  "X-Forwarded-Proto: gopher\r\n"
	                  "X-Forwarded-Host: evil\r\n"
	                  "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"
	                  "Cookie: a=b\r\n"
	                  "X-Forwarded-For: 10.0.0.3\r\n"
	                  "Forwarded: for=6.6.6.6\r\n"
	                  "X-Forwarded-Port: 443\r\n"
	                  "x-forwarded-ssl: on\r\n"
	                  "X_Forwarded_For: 6.6.6.6\r\n"
	                  "X-Real_IP: 6.6.6.6\r\n"
	                  "True-Client-IP: 6.6.6.6\r\n"
	                  "X-Client-IP: 6.6.6.6\r\n"
	                  "CF-Connecting-IP: 6.6.6.6\r\n"
	                  "X-Cluster-Client-IP: 6.6.6.6\r\n"
	                  "X-Forwarded: for=6.6.6.6\r\n"
	                  "Content-Length: 3, 3\r\n"
	                  "\r\n";
	const char *want = "POST /x HTTP/1.1\r\n"
	                   "Host: Example.com:8080\r\n"
	                   "Cookie: a=b\r\n"
	                   "Content-Length: 3\r\n"
	                   "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 203.0.113.7\r\n"
	                   "X-Forwarded-Proto: https\r\n"
	                   "X-Forwarded-Host: Example.com:8080\r\n"
	                   "X-Real-IP: 203.0.113.7\r\n"
	                   "\r\n";
	char out[2048];
	ssize_t n = rewrite(req, &FW, out, sizeof(out));
	int st;

	CHECK(n == (ssize_t)strlen(want));
	if (n > 0 && memcmp(out, want, (size_t)n) != 0) {
		fprintf(stderr, "  got:\n%.*s", (int)n, out);
		CHECK(0);
	}
	/* The written head parses back. */
	CHECK(http1_parse_request(out, (size_t)n, MAX_HEAD, &H, &st, NULL) == n);
}

/* Client-address fields that PHP and other frameworks read as the client's. */
static void test_rewrite_client_ip_fields(void)
{
	char out[1024];
	ssize_t n = rewrite("GET / HTTP/1.1\r\nHost: a\r\nClient-IP: 6.6.6.6\r\n"
	                    "x-originating-ip: 6.6.6.6\r\nX-Remote-IP: 6.6.6.6\r\n"
	                    "X-Remote-Addr: 6.6.6.6\r\nX-Client-IPs: kept\r\n\r\n",
	                    &FW, out, sizeof(out));

	CHECK(n > 0 && !has(out, n, "6.6.6.6"));
	CHECK(has(out, n, "\r\nX-Client-IPs: kept\r\n"));
	CHECK(has(out, n, "\r\nX-Real-IP: 203.0.113.7\r\n"));
}

/* Access lists with users: the edge's Basic credentials are dropped, any
 * other Authorization (Bearer) goes on to the service. */
static void test_rewrite_drops_basic_only(void)
{
	struct http1_forward fw = {"192.0.2.1", 1, "a.example", 0, 1};
	char out[1024];
	ssize_t n = rewrite("GET / HTTP/1.1\r\nHost: a.example\r\nAuthorization: Basic YTpi\r\n"
	                    "authorization: basic\tYTpj\r\nAuthorization: Bearer t0k\r\n"
	                    "Authorization: Basicx\r\n\r\n",
	                    &fw, out, sizeof(out));

	CHECK(n > 0);
	out[n > 0 ? n : 0] = '\0';
	CHECK(strstr(out, "YTpi") == NULL && strstr(out, "YTpj") == NULL);
	CHECK(strstr(out, "\r\nAuthorization: Bearer t0k\r\n") != NULL);
	CHECK(strstr(out, "\r\nAuthorization: Basicx\r\n") != NULL);
	fw.drop_authorization = 0;
	n = rewrite("GET / HTTP/1.1\r\nHost: a.example\r\nAuthorization: Basic YTpi\r\n\r\n", &fw,
	            out, sizeof(out));
	out[n > 0 ? n : 0] = '\0';
	CHECK(strstr(out, "\r\nAuthorization: Basic YTpi\r\n") != NULL);
}

static void test_rewrite_plain(void)
{
	struct http1_forward fw = {"2001:db8::1", 0, "a.example", 1, 0};
	char out[1024];
	ssize_t n = rewrite("GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n"
	                    "Transfer-Encoding-X: 1\r\n\r\n",
	                    &fw, out, sizeof(out));
	const char *want = "GET / HTTP/1.0\r\n"
	                   "Host: a.example\r\n"
	                   "Transfer-Encoding-X: 1\r\n"
	                   "X-Forwarded-For: 2001:db8::1\r\n"
	                   "X-Forwarded-Proto: http\r\n"
	                   "X-Forwarded-Host: a.example\r\n"
	                   "X-Real-IP: 2001:db8::1\r\n"
	                   "Connection: close\r\n"
	                   "\r\n";

	CHECK(n == (ssize_t)strlen(want) && memcmp(out, want, strlen(want)) == 0);
	if (n > 0 && (n != (ssize_t)strlen(want) || memcmp(out, want, strlen(want)) != 0))
		fprintf(stderr, "  got:\n%.*s", (int)n, out);

	/* Every smaller buffer fails instead of truncating. */
	{
		ssize_t full = n, k;
		for (k = 0; k < full; k++)
			CHECK(http1_write_request(&H, &fw, out, (size_t)k) == -1);
	}
	/* Kept alive: an HTTP/1.0 client's keep-alive is asked of the service
	 * too (its own Connection header is hop-by-hop); no wish, no header. */
	fw.close = 0;
	n = http1_write_request(&H, &fw, out, sizeof(out));
	CHECK(n > 0 && has(out, n, "X-Real-IP: 2001:db8::1\r\nConnection: keep-alive\r\n\r\n"));
	n = rewrite("GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", &fw, out, sizeof(out));
	CHECK(n > 0 && !has(out, n, "Connection"));
	n = rewrite("GET / HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n", &fw, out,
	            sizeof(out));
	CHECK(n > 0 && !has(out, n, "Connection"));
	fw.close = 1;
	n = rewrite("GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n"
	            "Transfer-Encoding-X: 1\r\n\r\n",
	            &fw, out, sizeof(out));
	/* Caller text with CR/LF never reaches the head. */
	fw.client_ip = "1.2.3.4\r\nX: y";
	CHECK(http1_write_request(&H, &fw, out, sizeof(out)) == -1);
	fw.client_ip = "";
	CHECK(http1_write_request(&H, &fw, out, sizeof(out)) == -1);
}

static void test_rewrite_upgrade(void)
{
	char out[1024];
	ssize_t n = rewrite("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Keep-Alive\r\n"
	                    "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	                    "Sec-WebSocket-Version: 13\r\n\r\n",
	                    &FW, out, sizeof(out));

	CHECK(n > 0);
	CHECK(has(out, n, "\r\nUpgrade: websocket\r\n"));
	CHECK(has(out, n, "\r\nConnection: upgrade\r\n"));
	CHECK(has(out, n, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
	CHECK(!has(out, n, "Keep-Alive"));
	CHECK(!has(out, n, "Connection: close"));

	/* Not an upgrade without "Connection: upgrade". */
	n = rewrite("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &FW, out,
	            sizeof(out));
	CHECK(n > 0 && !has(out, n, "Upgrade") && !has(out, n, "Connection"));

	/* h2c is never an upgrade: an ordinary request, nothing of h2c left. */
	n = rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
	            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
	            &FW, out, sizeof(out));
	CHECK(n > 0 && !has(out, n, "Upgrade") && !has(out, n, "Connection") &&
	      !has(out, n, "HTTP2-Settings") && !has(out, n, "AAMAAABkAAR"));
	/* HTTP2-Settings is dropped even when Connection does not list it. */
	n = rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
	            "Upgrade: websocket, H2C/1\r\nHTTP2-Settings: AAMA\r\n\r\n",
	            &FW, out, sizeof(out));
	CHECK(n > 0 && !has(out, n, "Upgrade") && !has(out, n, "Connection") &&
	      !has(out, n, "AAMA"));
}

static void test_rewrite_absolute(void)
{
	char out[1024];
	ssize_t n = rewrite("GET http://Site.example:81/p?q HTTP/1.1\r\nHost: other.example\r\n"
	                    "X-Forwarded-For: \r\n\r\n",
	                    &FW, out, sizeof(out));

	CHECK(n > 0);
	CHECK(has(out, n, "GET http://Site.example:81/p?q HTTP/1.1\r\nHost: Site.example:81\r\n"));
	CHECK(!has(out, n, "other.example"));
	CHECK(has(out, n, "\r\nX-Forwarded-Host: Site.example:81\r\n"));
	CHECK(has(out, n, "\r\nX-Forwarded-For: 203.0.113.7\r\n"));

	/* HTTP/1.0 without Host: the routed host is supplied. */
	n = rewrite("GET / HTTP/1.0\r\n\r\n", &FW, out, sizeof(out));
	CHECK(n > 0 && has(out, n, "GET / HTTP/1.0\r\nHost: example.com\r\n"));

	/* Chunked stays chunked, once. */
	n = rewrite(
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	    "Connection: Transfer-Encoding, X-Forwarded-For\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
	    &FW, out, sizeof(out));
	CHECK(n > 0 && has(out, n, "\r\nTransfer-Encoding: chunked\r\n"));
	CHECK(!has(out, n, "1.1.1.1"));
	CHECK(has(out, n, "\r\nX-Forwarded-For: 203.0.113.7\r\n"));
}

static void test_write_response(void)
{
	char out[1024];
	int st;
	ssize_t n;
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	                   "Connection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n"
	                   "X-Internal: 1\r\nTrailer: X\r\nTransfer-Encoding: chunked\r\n"
	                   "Upgrade: h2c\r\n\r\n";

	CHECK(presp(resp, &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	                           "Transfer-Encoding: chunked\r\n\r\n"));
	CHECK(has(out, n,
	          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	          "Transfer-Encoding: chunked\r\n\r\n"));
	n = http1_write_response(&H, 1, 1, out, sizeof(out));
	CHECK(has(out, n, "\r\nConnection: close\r\n\r\n"));
	n = http1_write_response(&H, 0, 0, out, sizeof(out));
	CHECK(has(out, n, "\r\nConnection: keep-alive\r\n\r\n"));
	CHECK(http1_write_response(&H, 0, 0, out, (size_t)n - 1) == -1);

	CHECK(
	    presp(
	        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	        "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
	        &st) > 0);
	n = http1_write_response(&H, 1, 1, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	                           "Connection: upgrade\r\n\r\n"));
	CHECK(has(out, n, "\r\nUpgrade: websocket\r\n"));
	CHECK(has(out, n, "\r\nConnection: upgrade\r\n\r\n"));

	CHECK(presp("HTTP/1.1 100 Continue\r\n\r\n", &st) > 0);
	n = http1_write_response(&H, 1, 0, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 100 Continue\r\n\r\n"));

	CHECK(presp("HTTP/1.0 200\r\nContent-Length: 2,2\r\n\r\n", &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.0 200 \r\nContent-Length: 2\r\n\r\n"));
	CHECK(has(out, n, "HTTP/1.0 200 \r\nContent-Length: 2\r\n\r\n"));
}

/* 1xx and 204 carry no framing fields to the client; a bad Content-Length never passes. */
static void test_write_response_bodiless(void)
{
	char out[1024];
	int st;
	ssize_t n;

	CHECK(presp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nETag: \"e\"\r\n"
	            "Transfer-Encoding: chunked\r\n\r\n",
	            &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 204 No Content\r\nETag: \"e\"\r\n\r\n"));
	CHECK(has(out, n, "HTTP/1.1 204 No Content\r\nETag: \"e\"\r\n\r\n"));

	CHECK(presp("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n", &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 100 Continue\r\n\r\n"));
	CHECK(presp("HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\nLink: </a>\r\n\r\n",
	            &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n > 0 && !has(out, n, "Transfer-Encoding") && has(out, n, "\r\nLink: </a>\r\n"));

	/* A HEAD or 304 answer keeps a valid length, loses a bad one. */
	CHECK(presp("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(has(out, n, "\r\nContent-Length: 7\r\n"));
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\nX: y\r\n\r\n",
	            &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 200 OK\r\nX: y\r\n\r\n"));
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", &st) > 0);
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(n > 0 && !has(out, n, "Content-Length"));
}

/* RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client; the proxy
 * passes the payload (on_data) and closes. */
static void test_dechunk_for_http10(void)
{
	static const char body[] = "5\r\nhello\r\n1;x=y\r\n \r\n5\r\nworld\r\n0\r\nT: 1\r\n\r\n";
	struct http1_chunked c;
	struct sink w;
	char out[1024], got[64];
	const char *err;
	ssize_t n;
	int st, done;

	CHECK(presp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n", &st) > 0);
	n = http1_write_response(&H, 1, 0, out, sizeof(out));
	CHECK(n == (ssize_t)strlen("HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n"));
	n = http1_write_response(&H, 0, 1, out, sizeof(out));
	CHECK(has(out, n, "\r\nTransfer-Encoding: chunked\r\n"));

	/* the payload, in runs, whichever way the input is cut */
	for (size_t cut = 1; cut < sizeof(body) - 1; cut++) {
		w = (struct sink){got, 0, sizeof(got)};
		http1_chunked_init(&c);
		c.on_data = collect;
		c.on_data_arg = &w;
		CHECK(http1_chunked_feed(&c, body, cut, &done, &err) == (ssize_t)cut);
		CHECK(http1_chunked_feed(&c, body + cut, sizeof(body) - 1 - cut, &done, &err) ==
		      (ssize_t)(sizeof(body) - 1 - cut));
		CHECK(done && w.len == 11 && memcmp(got, "hello world", 11) == 0);
	}
}

static void test_error_response(void)
{
	static const int codes[] = {400, 404, 405, 413, 421, 431, 500,
	                            501, 502, 503, 504, 505, 299};
	char out[2048];
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const struct http1_header *cl;
		enum http1_body kind;
		uint64_t len;
		const char *err;
		char want[64];
		int st;
		ssize_t n = http1_error_response(codes[i], 1, out, sizeof(out));
		ssize_t hl;

		CHECK(n > 0);
		if (n <= 0)
			continue;
		hl = http1_parse_response(out, (size_t)n, MAX_HEAD, &H, &st, &err);
		CHECK(hl > 0);
		if (hl <= 0)
			continue;
		CHECK(H.status == codes[i]);
		CHECK(span_is(H.reason, H.reason_len, http1_reason(codes[i])));
		CHECK(http1_response_body(&H, 0, 0, &kind, &len, &err) == 0);
		CHECK(kind == HTTP1_BODY_LENGTH && len == (uint64_t)(n - hl));
		cl = http1_find(&H, "Content-Type");
		CHECK(cl && span_is(cl->value, cl->value_len, "text/html; charset=utf-8"));
		CHECK(http1_has_token(&H, "Connection", "close"));
		CHECK(http1_has_token(&H, "Cache-Control", "no-store"));
		snprintf(want, sizeof(want), "<h1>%d %s</h1>", codes[i], http1_reason(codes[i]));
		CHECK(has(out + hl, n - hl, want));
		CHECK(has(out + hl, n - hl, "relais"));
		CHECK(has(out + hl, n - hl, "</html>\n"));
		CHECK(http1_error_response(codes[i], 1, out, (size_t)n) == n);
		CHECK(http1_error_response(codes[i], 1, out, (size_t)n - 1) == -1);
	}
	{
		ssize_t n = http1_error_response(404, 0, out, sizeof(out));
		CHECK(n > 0 && !has(out, n, "Connection") && !has(out, n, "Allow"));
		n = http1_error_response(405, 1, out, sizeof(out));
		CHECK(has(out, n, "\r\nAllow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n"));
		/* one more field, in the head; the page and its length as before */
		ssize_t plain = http1_error_response(429, 1, out, sizeof(out)), hl;
		const struct http1_header *ra;
		const char *err;
		int st;

		n = http1_error_response_with(429, 1, "Retry-After: 60", out, sizeof(out));
		CHECK(n == plain + 17);
		hl = http1_parse_response(out, (size_t)n, MAX_HEAD, &H, &st, &err);
		ra = hl > 0 ? http1_find(&H, "Retry-After") : NULL;
		CHECK(ra && span_is(ra->value, ra->value_len, "60"));
		CHECK(hl > 0 && has(out + hl, n - hl, "<h1>429 Too Many Requests</h1>"));
		CHECK(http1_error_response_with(429, 1, "Retry-After: 60", out, (size_t)n - 1) ==
		      -1);
	}
	CHECK(http1_error_response(99, 1, out, sizeof(out)) == -1);
	CHECK(http1_error_response(600, 1, out, sizeof(out)) == -1);
	CHECK(http1_error_response(204, 1, out, sizeof(out)) == -1);
	CHECK(http1_error_response(304, 1, out, sizeof(out)) == -1);
	CHECK(http1_error_response(101, 1, out, sizeof(out)) == -1);
}

static void test_reason(void)
{
	CHECK(strcmp(http1_reason(404), "Not Found") == 0);
	CHECK(strcmp(http1_reason(502), "Bad Gateway") == 0);
	CHECK(strcmp(http1_reason(431), "Request Header Fields Too Large") == 0);
	CHECK(strcmp(http1_reason(200), "OK") == 0);
	CHECK(strcmp(http1_reason(299), "Unknown") == 0);
}

/* ---------------------------------------------------------- route host */

static int route(const char *req, char *host)
{
	int st;

	if (preq(req, &st) <= 0)
		return -2;
	return http1_route_host(&H, host, HTTP1_ROUTE_HOST_MAX);
}

static void test_route_host(void)
{
	static const struct {
		const char *req;
		const char *host; /* NULL: -1 */
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n", "example.com"},
	    {"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "example.com"},
	    {"GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n", "example.com"},
	    {"GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", "example.com"},
	    {"GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n", "192.0.2.1"},
	    {"GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8443\r\n\r\n", "[2001:db8::1]"},
	    {"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", "[::1]"},
	    {"GET / HTTP/1.1\r\nHost: [::ffff:192.0.2.1]\r\n\r\n", "[::ffff:192.0.2.1]"},
	    {"GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", "a.example"},
	    {"GET HTTPS://B.example:443/x HTTP/1.1\r\nHost: c.example\r\n\r\n", "b.example"},
	    {"GET http://b.example?x HTTP/1.0\r\n\r\n", "b.example"},
	    {"CONNECT Tun.example:443 HTTP/1.1\r\nHost: tun.example:443\r\n\r\n", "tun.example"},
	    {"GET / HTTP/1.1\r\n\r\n", NULL}, /* missing */
	    {"GET / HTTP/1.0\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", NULL}, /* duplicate */
	    {"GET http://a/ HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", NULL},
	    {"GET http://a/ HTTP/1.1\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost:\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: exa_mple.com\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: .a\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a..\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n", NULL},
	    {"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", NULL},
	    {"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
	    {"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
	    {"GET urn:x HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
	};
	char host[HTTP1_ROUTE_HOST_MAX];
	size_t i;
	int st;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = route(cases[i].req, host);
		int ok = cases[i].host ? (r == 0 && strcmp(host, cases[i].host) == 0) : r == -1;
		if (!ok) {
			fprintf(stderr, "  route case %zu: %d \"%s\"\n", i, r, r == 0 ? host : "");
			CHECK(ok);
		}
	}
	/* Too long for the caller's buffer. */
	CHECK(preq("GET / HTTP/1.1\r\nHost: abcdef\r\n\r\n", &st) > 0);
	CHECK(http1_route_host(&H, host, 6) == -1);
	CHECK(http1_route_host(&H, host, 7) == 0 && strcmp(host, "abcdef") == 0);
}

int main(void)
{
	RUN(test_get);
	RUN(test_post_length);
	RUN(test_chunked_request);
	RUN(test_target_forms);
	RUN(test_line_endings);
	RUN(test_pipelined);
	RUN(test_truncation);
	RUN(test_oversize);
	RUN(test_too_many_headers);
	RUN(test_malformed);
	RUN(test_request_body_direct);
	RUN(test_response_parse);
	RUN(test_response_framing);
	RUN(test_tokens);
	RUN(test_chunked_basic);
	RUN(test_chunked_ext_trailers);
	RUN(test_chunked_trailer_span);
	RUN(test_chunked_pipelined);
	RUN(test_chunked_malformed);
	RUN(test_chunked_limits);
	RUN(test_rewrite_hop_by_hop);
	RUN(test_rewrite_client_ip_fields);
	RUN(test_rewrite_plain);
	RUN(test_rewrite_drops_basic_only);
	RUN(test_rewrite_upgrade);
	RUN(test_rewrite_absolute);
	RUN(test_write_response);
	RUN(test_write_response_bodiless);
	RUN(test_dechunk_for_http10);
	RUN(test_error_response);
	RUN(test_reason);
	RUN(test_route_host);
	UNIT_END();
}
