/* tests/unit/common/proxyproto.c - PROXY protocol headers, byte for byte. */
#include <arpa/inet.h>

#include "../../../common/proxyproto.h"
#include "../unit.h"

static struct proxyproto_end v4(const char *ip, uint16_t port)
{
	struct proxyproto_end e = {.family = 4, .port = port};

	inet_pton(AF_INET, ip, e.addr);
	return e;
}

static struct proxyproto_end v6(const char *ip, uint16_t port)
{
	struct proxyproto_end e = {.family = 6, .port = port};

	inet_pton(AF_INET6, ip, e.addr);
	return e;
}

static void test_v1(void)
{
	char buf[PROXYPROTO_MAX];
	struct proxyproto_end a = v4("192.0.2.1", 56324), b = v4("198.51.100.2", 443);
	struct proxyproto_end c = v6("2001:db8::1", 1), d = v6("::1", 25565);
	struct proxyproto_end u = {0};

	CHECK(proxyproto_v1(buf, sizeof(buf), &a, &b) == 45);
	CHECK(strcmp(buf, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n") == 0);
	CHECK(proxyproto_v1(buf, sizeof(buf), &c, &d) > 0);
	CHECK(strcmp(buf, "PROXY TCP6 2001:db8::1 ::1 1 25565\r\n") == 0);
	CHECK(proxyproto_v1(buf, sizeof(buf), &a, &d) > 0);
	CHECK(strcmp(buf, "PROXY UNKNOWN\r\n") == 0);
	CHECK(proxyproto_v1(buf, sizeof(buf), &u, &u) > 0);
	CHECK(proxyproto_v1(buf, 10, &a, &b) == 0);
}

static void test_v2(void)
{
	static const uint8_t want4[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
	                                0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 192,  0,    2,    1,
	                                198,  51,   100,  2,    0xdc, 0x04, 0x01, 0xbb};
	uint8_t buf[64];
	struct proxyproto_end a = v4("192.0.2.1", 56324), b = v4("198.51.100.2", 443);
	struct proxyproto_end c = v6("2001:db8::1", 1), d = v6("::1", 25565);
	size_t n = proxyproto_v2(buf, sizeof(buf), &a, &b, 0);

	CHECK(n == sizeof(want4) && memcmp(buf, want4, n) == 0);
	CHECK(proxyproto_v2(buf, sizeof(buf), &a, &b, 1) == 28 && buf[13] == 0x12);
	n = proxyproto_v2(buf, sizeof(buf), &c, &d, 0);
	CHECK(n == 52 && buf[13] == 0x21 && buf[15] == 36);
	CHECK(buf[16] == 0x20 && buf[17] == 0x01 && buf[16 + 15] == 1 && buf[32] == 0 &&
	      buf[47] == 1);
	CHECK(buf[48] == 0 && buf[49] == 1 && buf[50] == 0x63 && buf[51] == 0xdd);
	n = proxyproto_v2(buf, sizeof(buf), &a, &d, 0);
	CHECK(n == 16 && buf[13] == 0x00 && buf[15] == 0);
	CHECK(proxyproto_v2(buf, 20, &c, &d, 0) == 0);
}

/* The limits of each form, byte for byte (proxy-protocol.txt 2.1, 2.2). */
static void test_edges(void)
{
	static const uint8_t unspec[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	                                 0x55, 0x49, 0x54, 0x0a, 0x21, 0x00, 0x00, 0x00};
	char line[PROXYPROTO_MAX];
	uint8_t buf[64];
	struct proxyproto_end a = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	struct proxyproto_end b = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	struct proxyproto_end c = v4("255.255.255.255", 65535), d = v4("0.0.0.0", 0);
	struct proxyproto_end u = {0};
	size_t n;

	/* the longest v1 line: 104 bytes, within the spec's 107; the NUL needs one more */
	CHECK(proxyproto_v1(line, sizeof(line), &a, &b) == 104);
	CHECK(strcmp(line, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe "
	                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n") == 0);
	CHECK(proxyproto_v1(line, 104, &a, &b) == 0);
	CHECK(proxyproto_v1(line, 105, &a, &b) == 104);
	CHECK(proxyproto_v1(line, sizeof(line), &c, &d) > 0);
	CHECK(strcmp(line, "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n") == 0);
	CHECK(proxyproto_v1(line, sizeof(line), &u, &u) == 15);
	CHECK(memcmp(line, "PROXY UNKNOWN\r\n", 15) == 0);
	CHECK(proxyproto_v1(line, 15, &u, &u) == 0);

	/* v2, families unknown: PROXY command, UNSPEC/UNSPEC, no address block,
	 * for streams and datagrams alike */
	CHECK(proxyproto_v2(buf, sizeof(buf), &u, &u, 0) == 16 && memcmp(buf, unspec, 16) == 0);
	CHECK(proxyproto_v2(buf, sizeof(buf), &u, &u, 1) == 16 && memcmp(buf, unspec, 16) == 0);
	CHECK(proxyproto_v2(buf, 15, &u, &u, 0) == 0);
	/* IPv6 over UDP: 0x22, 36 bytes of addresses, ports big endian */
	n = proxyproto_v2(buf, sizeof(buf), &a, &b, 1);
	CHECK(n == 52 && buf[12] == 0x21 && buf[13] == 0x22 && buf[14] == 0 && buf[15] == 36);
	CHECK(buf[31] == 0xfe && buf[47] == 0xff && buf[48] == 0xff && buf[51] == 0xff);
	CHECK(proxyproto_v2(buf, 52, &a, &b, 1) == 52 && proxyproto_v2(buf, 51, &a, &b, 1) == 0);
	/* IPv4 exactly fits 28 bytes */
	CHECK(proxyproto_v2(buf, 28, &c, &d, 1) == 28 && buf[13] == 0x12 && buf[15] == 12);
	CHECK(proxyproto_v2(buf, 27, &c, &d, 1) == 0);
}

int main(void)
{
	RUN(test_v1);
	RUN(test_v2);
	RUN(test_edges);
	UNIT_END();
}
