/*
 * tests/unit/edge/acme_http.c - the pure parts of edge/acme_http.c: URL
 * splitting, Link header parsing and chunked decoding.
 */
#include <string.h>

#include "edge/acme_http.h"
#include "tests/unit/unit.h"

static int url(const char *u, const char *host, unsigned port, const char *path)
{
	char h[256], p[256];
	uint16_t pt = 0;

	if (acme_http_parse_url(u, h, sizeof(h), &pt, p, sizeof(p)) < 0)
		return host == NULL;
	return host != NULL && strcmp(h, host) == 0 && pt == port && strcmp(p, path) == 0;
}

static void test_parse_url(void)
{
	CHECK(url("https://acme-v02.api.letsencrypt.org/directory", "acme-v02.api.letsencrypt.org",
	          443, "/directory"));
	CHECK(url("https://127.0.0.1:14000/dir", "127.0.0.1", 14000, "/dir"));
	CHECK(url("HTTPS://ca.test", "ca.test", 443, "/"));
	CHECK(url("https://ca.test?x=1", "ca.test", 443, "/?x=1"));
	CHECK(url("https://ca.test/a/b?c=d#frag", "ca.test", 443, "/a/b?c=d"));
	CHECK(url("https://[::1]:8443/dir", "::1", 8443, "/dir"));
	CHECK(url("https://[2001:db8::1]/x", "2001:db8::1", 443, "/x"));
	CHECK(url("http://ca.test/dir", NULL, 0, NULL));
	CHECK(url("https://", NULL, 0, NULL));
	CHECK(url("https://user@ca.test/", NULL, 0, NULL));
	CHECK(url("https://ca.test:0/", NULL, 0, NULL));
	CHECK(url("https://ca.test:65536/", NULL, 0, NULL));
	CHECK(url("https://ca.test:12a/", NULL, 0, NULL));
	CHECK(url("https://ca.test:/", NULL, 0, NULL));
	CHECK(url("https://[::1/", NULL, 0, NULL));
	CHECK(url("https://[::1]x/", NULL, 0, NULL));
	{
		char h[4], p[256];
		uint16_t pt;

		CHECK(acme_http_parse_url("https://long.test/", h, sizeof(h), &pt, p, sizeof(p)) ==
		      -1);
		CHECK(acme_http_parse_url("https://a.test/abcdef", p, sizeof(p), &pt, h,
		                          sizeof(h)) == -1);
	}
}

static int has_link(const char *v, const char *rel, const char *want)
{
	char out[256];
	int r = acme_http_link(v, strlen(v), rel, out, sizeof(out));

	return want == NULL ? r == 0 : r == 1 && strcmp(out, want) == 0;
}

static void test_link(void)
{
	/* pebble and Boulder style */
	CHECK(has_link("<https://127.0.0.1:14000/dir>;rel=\"index\"", "index",
	               "https://127.0.0.1:14000/dir"));
	CHECK(has_link("<https://127.0.0.1:14000/dir>;rel=\"index\"", "up", NULL));
	CHECK(has_link("<https://ca/dir>;rel=\"index\", <https://ca/cert/1/1>; rel=\"alternate\", "
	               "<https://ca/issuer>;rel=\"up\"",
	               "up", "https://ca/issuer"));
	CHECK(has_link("<https://ca/a,b>; title=\"x, y; z\"; rel=up", "up", "https://ca/a,b"));
	CHECK(has_link("<https://ca/x>; REL=\"alternate up\"", "up", "https://ca/x"));
	CHECK(has_link("<https://ca/x>; rel=\"upper\"", "up", NULL));
	CHECK(has_link("<https://ca/x", "up", NULL));
	CHECK(has_link("https://ca/x; rel=up", "up", NULL));
	CHECK(has_link("", "up", NULL));
	CHECK(has_link("<https://ca/x>; rel", "up", NULL));
	CHECK(has_link("<https://ca/x>; ;;= ,<https://ca/y>;rel=up", "up", "https://ca/y"));
	{
		char out[4];

		CHECK(acme_http_link("<https://ca/x>;rel=up", 21, "up", out, sizeof(out)) == 0);
	}
}

static long dechunk(const char *in, char *buf)
{
	strcpy(buf, in);
	return acme_http_dechunk(buf, strlen(in));
}

static void test_dechunk(void)
{
	char buf[256];

	CHECK(dechunk("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", buf) == 11);
	CHECK(memcmp(buf, "hello world", 11) == 0);
	CHECK(dechunk("0\r\n\r\n", buf) == 0);
	CHECK(dechunk("A\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n", buf) == 10);
	CHECK(memcmp(buf, "0123456789", 10) == 0);
	CHECK(dechunk("5\r\nhell\r\n0\r\n\r\n", buf) == -1);
	CHECK(dechunk("5\r\nhelloXX0\r\n\r\n", buf) == -1);
	CHECK(dechunk("x\r\n", buf) == -1);
	CHECK(dechunk("5\r\nhello\r\n", buf) == -1);
	CHECK(dechunk("ffffffffffffffffff\r\n", buf) == -1);
	CHECK(dechunk("ffffffff\r\nab\r\n0\r\n\r\n", buf) == -1);
	CHECK(dechunk("", buf) == -1);
}

static uint32_t retry_after(const char *v, time_t now)
{
	return acme_http_retry_after(v, strlen(v), now);
}

static void test_retry_after(void)
{
	time_t now = 1784793600; /* Thu, 23 Jul 2026 08:00:00 GMT */

	CHECK(retry_after("120", now) == 120);
	CHECK(retry_after("0", now) == 1); /* present: at least a second */
	CHECK(retry_after("99999999999999999999", now) == 86400);
	CHECK(retry_after("Thu, 23 Jul 2026 08:10:00 GMT", now) == 600);
	CHECK(retry_after("Thu, 23 Jul 2026 07:00:00 GMT", now) == 1); /* past */
	CHECK(retry_after("Sat, 25 Jul 2026 08:00:00 GMT", now) == 86400);
	CHECK(retry_after("", now) == 0);
	CHECK(retry_after("12s", now) == 0);
	CHECK(retry_after("-5", now) == 0);
	CHECK(retry_after("Thu, 23 Jul 2026 08:10:00", now) == 0);
	CHECK(retry_after("Thu, 23 Jul 2026 08:10:00 GMT x", now) == 0);
}

int main(void)
{
	RUN(test_parse_url);
	RUN(test_link);
	RUN(test_dechunk);
	RUN(test_retry_after);
	UNIT_END();
}
