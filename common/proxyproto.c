/*
 * common/proxyproto.c - PROXY protocol v1 and v2 headers (see proxyproto.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proxyproto.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

size_t proxyproto_v1(char *out, size_t cap, const struct proxyproto_end *src,
                     const struct proxyproto_end *dst)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	int af, n;

	if (src->family != dst->family || (src->family != 4 && src->family != 6)) {
		n = snprintf(out, cap, "PROXY UNKNOWN\r\n");
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	af = src->family == 4 ? AF_INET : AF_INET6;
	inet_ntop(af, src->addr, a, sizeof(a));
	inet_ntop(af, dst->addr, b, sizeof(b));
	n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", src->family == 4 ? "TCP4" : "TCP6", a, b,
	             src->port, dst->port);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t proxyproto_v2(uint8_t *out, size_t cap, const struct proxyproto_end *src,
                     const struct proxyproto_end *dst, int dgram)
{
	size_t alen, n = 16;
	uint8_t fam;

	if (src->family == dst->family && src->family == 4) {
		fam = 0x10;
		alen = 12;
	} else if (src->family == dst->family && src->family == 6) {
		fam = 0x20;
		alen = 36;
	} else {
		fam = 0x00;
		alen = 0;
	}
	if (cap < 16 + alen)
		return 0;
	memcpy(out, v2_sig, 12);
	out[12] = 0x21; /* version 2, PROXY */
	out[13] = (uint8_t)(fam | (alen ? (dgram ? 0x02 : 0x01) : 0x00));
	out[14] = (uint8_t)(alen >> 8);
	out[15] = (uint8_t)alen;
	if (fam == 0x10) {
		memcpy(out + n, src->addr, 4);
		memcpy(out + n + 4, dst->addr, 4);
		n += 8;
	} else if (fam == 0x20) {
		memcpy(out + n, src->addr, 16);
		memcpy(out + n + 16, dst->addr, 16);
		n += 32;
	}
	if (alen) {
		out[n++] = (uint8_t)(src->port >> 8);
		out[n++] = (uint8_t)src->port;
		out[n++] = (uint8_t)(dst->port >> 8);
		out[n++] = (uint8_t)dst->port;
	}
	return n;
}
