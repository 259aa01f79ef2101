/*
 * common/proxyproto.h - PROXY protocol headers (HAProxy's proxy-protocol.txt,
 * versions 1 and 2), so a local service sees the real client address.
 * Pure encoder, no I/O.
 */
#ifndef RELAIS_COMMON_PROXYPROTO_H
#define RELAIS_COMMON_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROXYPROTO_MAX 108 /* longest v1 line; v2 for IPv6 is 52 bytes */

/* One endpoint: family 4 or 6 (0 = unknown), address bytes, port. */
struct proxyproto_end {
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;
};

/**
 * Write a v1 line ("PROXY TCP4 src dst sport dport\r\n", or "PROXY UNKNOWN\r\n"
 * when the families are unknown or differ) into out.  Returns its length,
 * or 0 when cap is too small.
 */
size_t proxyproto_v1(char *out, size_t cap, const struct proxyproto_end *src,
                     const struct proxyproto_end *dst);

/**
 * Write a v2 binary header (PROXY command, STREAM or DGRAM) into out.
 * Unknown or mixed families give a LOCAL-less "UNSPEC" address block.
 * Returns its length, or 0 when cap is too small.
 */
size_t proxyproto_v2(uint8_t *out, size_t cap, const struct proxyproto_end *src,
                     const struct proxyproto_end *dst, int dgram);

#endif
