/*
 * tests/fuzz/fuzz_http1.c - libFuzzer target for edge/http1.c.
 *
 * The input is parsed as a request head and as a response head; what parses
 * is checked for internal consistency, rewritten, and the rewritten head must
 * parse back to the same message and framing.  The bytes after a chunked
 * head (and the whole input) go through the chunked tracker twice, in one
 * piece and one byte at a time, which must agree.  Any disagreement aborts.
 */
#include "edge/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEAD 8192

static struct http1_head h, h2;
static char out[MAX_HEAD * 4];

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_http1: invariant failed: %s\n", what);
		abort();
	}
}

static int inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && p + n <= buf + len;
}

static void check_head(const struct http1_head *m, const char *buf, size_t len, ssize_t r)
{
	size_t i;

	check(r > 0 && (size_t)r <= len && m->head_len == (size_t)r, "head_len");
	check(m->nheaders <= HTTP1_MAX_HEADERS, "nheaders");
	check(m->minor == 0 || m->minor == 1, "minor");
	for (i = 0; i < m->nheaders; i++) {
		const struct http1_header *f = &m->headers[i];
		check(f->name_len > 0 && inside(f->name, f->name_len, buf, (size_t)r), "name");
		check(inside(f->value, f->value_len, buf, (size_t)r), "value");
		check(memchr(f->value, '\r', f->value_len) == NULL, "CR in value");
		check(memchr(f->value, '\n', f->value_len) == NULL, "LF in value");
		check(f->value_len == 0 ||
		          (f->value[0] != ' ' && f->value[f->value_len - 1] != ' ' &&
		           f->value[0] != '\t' && f->value[f->value_len - 1] != '\t'),
		      "value not trimmed");
	}
}

/* Feed data whole and byte by byte; both runs must agree.  Returns consumed or -1. */
static ssize_t chunked_both(const char *data, size_t size, int *done)
{
	struct http1_chunked a, b;
	const char *err = NULL;
	ssize_t whole, bytes = 0;
	int d1 = 0, d2 = 0;
	size_t i;

	http1_chunked_init(&a);
	whole = http1_chunked_feed(&a, data, size, &d1, &err);
	check(whole >= -1 && (whole < 0 || (size_t)whole <= size), "chunked return");
	check(whole >= 0 || err != NULL, "chunked error reason");
	check(whole < 0 || d1 || (size_t)whole == size, "chunked stopped early");

	http1_chunked_init(&b);
	for (i = 0; i < size && !d2; i++) {
		ssize_t r = http1_chunked_feed(&b, data + i, 1, &d2, &err);
		if (r < 0) {
			bytes = -1;
			break;
		}
		check(r == 1, "chunked single byte");
		bytes += r;
	}
	check(whole == bytes, "chunked whole vs byte-by-byte: consumed");
	check(d1 == d2, "chunked whole vs byte-by-byte: done");
	if (whole >= 0) {
		check(a.total == b.total, "chunked total");
		if (d1) {
			int d3 = 0;
			check(http1_chunked_feed(&a, "x", 1, &d3, &err) == 0 && d3 == 1,
			      "chunked after done");
		}
	}
	*done = d1;
	return whole;
}

static void fuzz_request(const char *buf, size_t size)
{
	static const struct http1_forward fw = {"198.51.100.4", 1, "fuzz.example", 0, 1};
	static const struct http1_forward fw2 = {"2001:db8::4", 0, NULL, 1, 0};
	const struct http1_forward *fwp = (size & 1) ? &fw : &fw2;
	enum http1_body kind, kind2;
	uint64_t length, length2;
	const char *err = NULL;
	char host[HTTP1_ROUTE_HOST_MAX];
	int st = 0, st2 = 0, done;
	ssize_t r, w, r2;

	r = http1_parse_request(buf, size, MAX_HEAD, &h, &st, &err);
	if (r < 0) {
		check(err != NULL, "request error reason");
		check(st == 400 || st == 414 || st == 431 || st == 501 || st == 505,
		      "request error status");
		return;
	}
	if (r == 0) {
		check(size < MAX_HEAD, "incomplete beyond max_head");
		return;
	}
	check_head(&h, buf, size, r);
	check(h.method_len > 0 && h.target_len > 0, "request line");
	/* A valid head cut short is incomplete, never an error. */
	check(http1_parse_request(buf, (size_t)r - 1, MAX_HEAD, &h2, &st2, &err) ==
	          HTTP1_INCOMPLETE,
	      "prefix of a valid head");
	check(http1_request_body(&h, &kind, &length, &st2, &err) == 0, "request_body after parse");
	(void)http1_keep_alive(&h);
	(void)http1_is_upgrade(&h);

	if (http1_route_host(&h, host, sizeof(host)) == 0) {
		size_t i, n = strlen(host);
		check(n > 0 && n < sizeof(host), "route host length");
		for (i = 0; i < n; i++)
			check(!(host[i] >= 'A' && host[i] <= 'Z'), "route host lower case");
	}

	w = http1_write_request(&h, fwp, out, sizeof(out));
	check(w > 0, "rewrite fits");
	check(http1_write_request(&h, fwp, out, (size_t)w - 1) == -1, "rewrite one byte short");
	check(http1_write_request(&h, fwp, out, sizeof(out)) == w, "rewrite again");
	r2 = http1_parse_request(out, (size_t)w, sizeof(out), &h2, &st2, &err);
	if (r2 < 0 && st2 == 431 && h.nheaders + 6 > HTTP1_MAX_HEADERS)
		goto body;
	check(r2 == w, "rewritten head parses back");
	check(h2.method_len == h.method_len && memcmp(h2.method, h.method, h.method_len) == 0,
	      "method kept");
	check(h2.target_len == h.target_len && memcmp(h2.target, h.target, h.target_len) == 0,
	      "target kept");
	check(h2.minor == h.minor, "version kept");
	check(http1_request_body(&h2, &kind2, &length2, &st2, &err) == 0, "rewritten framing");
	check(kind2 == kind && length2 == length, "framing kept");
	check(http1_find(&h2, "Keep-Alive") == NULL && http1_find(&h2, "TE") == NULL &&
	          http1_find(&h2, "Proxy-Connection") == NULL && http1_find(&h2, "Trailer") == NULL,
	      "hop-by-hop removed");
	check(http1_is_upgrade(&h2) == http1_is_upgrade(&h), "upgrade kept");

body:
	if (kind == HTTP1_BODY_CHUNKED)
		(void)chunked_both(buf + r, size - (size_t)r, &done);
}

static void fuzz_response(const char *buf, size_t size)
{
	enum http1_body kind;
	uint64_t length;
	const char *err = NULL;
	int st = 0, st2, done, i, close, minor;
	ssize_t r, w, r2;

	r = http1_parse_response(buf, size, MAX_HEAD, &h, &st, &err);
	if (r < 0) {
		check(err != NULL && st == 502, "response error");
		return;
	}
	if (r == 0)
		return;
	check_head(&h, buf, size, r);
	check(h.status >= 100 && h.status <= 599, "status range");
	check(http1_parse_response(buf, (size_t)r - 1, MAX_HEAD, &h2, &st2, &err) ==
	          HTTP1_INCOMPLETE,
	      "prefix of a valid response head");
	for (i = 0; i < 4; i++) {
		err = NULL;
		if (http1_response_body(&h, i & 1, i >> 1, &kind, &length, &err) < 0)
			check(err != NULL, "response_body reason");
		else if (kind == HTTP1_BODY_CHUNKED && i == 0)
			(void)chunked_both(buf + r, size - (size_t)r, &done);
	}
	close = (int)(size & 1);
	minor = (int)((size >> 1) & 1);
	w = http1_write_response(&h, close, minor, out, sizeof(out));
	check(w > 0, "response rewrite fits");
	check(http1_write_response(&h, close, minor, out, (size_t)w - 1) == -1,
	      "response rewrite one byte short");
	check(http1_write_response(&h, close, minor, out, sizeof(out)) == w, "response again");
	r2 = http1_parse_response(out, (size_t)w, sizeof(out), &h2, &st2, &err);
	if (r2 < 0 && h.nheaders + 1 > HTTP1_MAX_HEADERS)
		return;
	check(r2 == w, "rewritten response parses back");
	check(h2.status == h.status && h2.minor == h.minor, "status line kept");
	check((h.status >= 200 && h.status != 204) ||
	          (!http1_find(&h2, "Content-Length") && !http1_find(&h2, "Transfer-Encoding")),
	      "no framing fields in a rewritten 1xx or 204");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *buf = (const char *)data;
	int done;

	fuzz_request(buf, size);
	fuzz_response(buf, size);
	(void)chunked_both(buf, size, &done);
	if (size >= 2) {
		int status = 100 + (data[0] << 8 | data[1]) % 520;
		ssize_t n = http1_error_response(status, data[0] & 1, out, sizeof(out));
		check(n == -1 || (n > 0 && (size_t)n < sizeof(out)), "error response");
		(void)http1_reason(status);
	}
	return 0;
}
