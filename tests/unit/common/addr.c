/*
 * tests/unit/common/addr.c - numeric socket addresses in text form.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "common/addr.h"
#include "tests/unit/unit.h"

/* parse then format must give back want (or text itself when want is NULL) */
static int roundtrip(const char *text, const char *want)
{
	struct addr a;
	char out[ADDR_TEXT_MAX];

	if (addr_parse(text, &a) < 0)
		return 0;
	addr_format(&a, out);
	return strcmp(out, want != NULL ? want : text) == 0;
}

static void test_parse_ok(void)
{
	struct addr a;

	CHECK(roundtrip("0.0.0.0:80", NULL));
	CHECK(roundtrip("127.0.0.1:65535", NULL));
	CHECK(roundtrip("[::]:443", NULL));
	CHECK(roundtrip("[::1]:1", NULL));
	CHECK(roundtrip("[2001:DB8::0001]:8080", "[2001:db8::1]:8080"));
	CHECK(roundtrip("10.0.0.1:080", "10.0.0.1:80"));

	CHECK(addr_parse("1.2.3.4:80", &a) == 0);
	CHECK(a.ss.ss_family == AF_INET);
	CHECK(a.len == sizeof(struct sockaddr_in));
	CHECK(addr_port(&a) == 80);
	CHECK(addr_parse("[::1]:8443", &a) == 0);
	CHECK(a.ss.ss_family == AF_INET6);
	CHECK(a.len == sizeof(struct sockaddr_in6));
	CHECK(addr_port(&a) == 8443);
}

static void test_parse_bad(void)
{
	static const char *const bad[] = {
	    "",
	    "1.2.3:80",
	    "1.2.3.4",
	    "1.2.3.4:",
	    "1.2.3.4:0",
	    "1.2.3.4:65536",
	    "1.2.3.4:-1",
	    "1.2.3.4: 80",
	    "1.2.3.4:80x",
	    "256.1.1.1:80",
	    "::1:80",
	    "[::1]",
	    "[::1]80",
	    "[1.2.3.4]:80",
	    "[::1:80",
	    "localhost:80",
	    ":80",
	    "1.2.3.4:123456",
	    "[]:80",
	    " 1.2.3.4:80",
	};
	struct addr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (addr_parse(bad[i], &a) == 0) {
			fprintf(stderr, "  accepted '%s'\n", bad[i]);
			CHECK(!"bad address accepted");
		}
	}
}

static void test_format_ip(void)
{
	struct sockaddr_in6 sin6;
	struct sockaddr_in sin;
	char out[ADDR_TEXT_MAX];

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	addr_format_ip((struct sockaddr *)&sin, out);
	CHECK(strcmp(out, "192.0.2.7") == 0);

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr);
	addr_format_ip((struct sockaddr *)&sin6, out);
	CHECK(strcmp(out, "2001:db8::5") == 0);

	/* a dual-stack listener's IPv4 client is shown as IPv4 */
	inet_pton(AF_INET6, "::ffff:198.51.100.9", &sin6.sin6_addr);
	addr_format_ip((struct sockaddr *)&sin6, out);
	CHECK(strcmp(out, "198.51.100.9") == 0);
}

static void test_split(void)
{
	char host[64];
	uint16_t port = 0;

	CHECK(addr_split("example.com:8080", host, sizeof(host), &port) == 0);
	CHECK(strcmp(host, "example.com") == 0 && port == 8080);
	CHECK(addr_split("10.1.2.3:22", host, sizeof(host), &port) == 0);
	CHECK(strcmp(host, "10.1.2.3") == 0 && port == 22);
	CHECK(addr_split("[fe80::1]:5001", host, sizeof(host), &port) == 0);
	CHECK(strcmp(host, "fe80::1") == 0 && port == 5001);

	CHECK(addr_split("example.com", host, sizeof(host), &port) < 0);
	CHECK(addr_split("example.com:", host, sizeof(host), &port) < 0);
	CHECK(addr_split("example.com:0", host, sizeof(host), &port) < 0);
	CHECK(addr_split(":80", host, sizeof(host), &port) < 0);
	CHECK(addr_split("::1:80", host, sizeof(host), &port) < 0);
	CHECK(addr_split("[nothex]:80", host, sizeof(host), &port) < 0);
	CHECK(addr_split("averyveryverylongname.example.com:80", host, 8, &port) < 0);
}

static void test_is_any(void)
{
	static const char *any[] = {"0.0.0.0:80", "[::]:53"};
	static const char *not_any[] = {"127.0.0.1:80", "[::1]:53", "10.0.0.1:1", "[fe80::1]:2"};
	struct addr a;

	for (size_t i = 0; i < 2; i++) {
		CHECK(addr_parse(any[i], &a) == 0);
		CHECK(addr_is_any(&a));
	}
	for (size_t i = 0; i < 4; i++) {
		CHECK(addr_parse(not_any[i], &a) == 0);
		CHECK(!addr_is_any(&a));
	}
}

/* a dual-stack socket's IPv4 peer becomes AF_INET; nothing else changes */
static void test_unmap(void)
{
	static const char *same[] = {"[::1]:53", "[::]:80", "127.0.0.1:9", "[fe80::1]:2"};
	struct addr a, b;
	char out[ADDR_TEXT_MAX];

	CHECK(addr_parse("[::ffff:192.0.2.7]:4433", &a) == 0);
	CHECK(a.ss.ss_family == AF_INET6);
	addr_unmap(&a);
	CHECK(a.ss.ss_family == AF_INET);
	CHECK(a.len == sizeof(struct sockaddr_in));
	addr_format(&a, out);
	CHECK(strcmp(out, "192.0.2.7:4433") == 0);
	for (size_t i = 0; i < 4; i++) {
		CHECK(addr_parse(same[i], &a) == 0);
		b = a;
		addr_unmap(&a);
		CHECK(a.len == b.len && memcmp(&a.ss, &b.ss, a.len) == 0);
	}
}

/* A UDP socket on loopback, connected to itself, to another, or not at all. */
static void test_fd_self_connected(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_DGRAM, 0), o = socket(AF_INET, SOCK_DGRAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(s >= 0 && o >= 0);
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
	CHECK(!addr_fd_self_connected(s)); /* not connected */
	CHECK(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(addr_fd_self_connected(s));
	CHECK(connect(o, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(!addr_fd_self_connected(o)); /* to s, from a port of its own */
	CHECK(!addr_fd_self_connected(-1));
	close(s);
	close(o);
}

/* IP prefixes: parsed strictly, matched by their bits, IPv4-mapped as IPv4. */
static void test_cidr(void)
{
	static const char *bad[] = {"",
	                            "/8",
	                            "10.0.0.0/",
	                            "10.0.0.0/33",
	                            "10.0.0.1/8",
	                            "10.0.0.0/+8",
	                            "10.0.0.0/08x",
	                            "::1/129",
	                            "2001:db8::1/32",
	                            "[::1]",
	                            "10.0.0",
	                            "example.com",
	                            "10.0.0.0/ 8",
	                            "10.0.0.0/0008"};
	static const struct {
		const char *cidr, *addr;
		int match;
	} cases[] = {
	    {"10.0.0.0/8", "10.255.1.2:1", 1},
	    {"10.0.0.0/8", "11.0.0.0:1", 0},
	    {"192.168.1.128/25", "192.168.1.200:1", 1},
	    {"192.168.1.128/25", "192.168.1.127:1", 0},
	    {"203.0.113.7", "203.0.113.7:9", 1},
	    {"203.0.113.7", "203.0.113.8:9", 0},
	    {"203.0.113.7", "[::ffff:203.0.113.7]:9", 1}, /* a dual-stack listener's client */
	    {"0.0.0.0/0", "198.51.100.1:1", 1},
	    {"0.0.0.0/0", "[::1]:1", 0},
	    {"2001:db8::/32", "[2001:db8:ffff::1]:1", 1},
	    {"2001:db8::/33", "[2001:db8:8000::1]:1", 0},
	    {"::/0", "[fe80::1]:1", 1},
	    {"::1", "127.0.0.1:1", 0},
	};
	struct cidr c;
	struct addr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (cidr_parse(bad[i], &c) == 0)
			fprintf(stderr, "  accepted '%s'\n", bad[i]);
		CHECK(cidr_parse(bad[i], &c) < 0);
	}
	CHECK(cidr_parse("10.1.0.0/16", &c) == 0 && c.family == AF_INET && c.bits == 16);
	CHECK(cidr_parse("::1", &c) == 0 && c.family == AF_INET6 && c.bits == 128);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK(cidr_parse(cases[i].cidr, &c) == 0);
		CHECK(addr_parse(cases[i].addr, &a) == 0);
		if (cidr_match(&c, &a) != cases[i].match)
			fprintf(stderr, "  %s in %s: want %d\n", cases[i].addr, cases[i].cidr,
			        cases[i].match);
		CHECK(cidr_match(&c, &a) == cases[i].match);
	}
}

int main(void)
{
	RUN(test_cidr);
	RUN(test_parse_ok);
	RUN(test_unmap);
	RUN(test_is_any);
	RUN(test_parse_bad);
	RUN(test_format_ip);
	RUN(test_split);
	RUN(test_fd_self_connected);
	UNIT_END();
}
