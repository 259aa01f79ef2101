/*
 * common/wsframe.c - WebSocket frame headers and masking (see wsframe.h).
 */
#include <string.h>

#include "wsframe.h"

ssize_t wsf_decode(const uint8_t *p, size_t n, struct wsf_header *h, const char **err)
{
	size_t need = 2;
	uint64_t len;

	if (n < 2)
		return 0;
	h->fin = p[0] >> 7;
	h->opcode = p[0] & 0x0f;
	h->masked = p[1] >> 7;
	len = p[1] & 0x7f;
	if (p[0] & 0x70) {
		*err = "reserved WebSocket bits set";
		return -1;
	}
	switch (h->opcode) {
	case WSF_CONT:
	case WSF_TEXT:
	case WSF_BINARY:
		break;
	case WSF_CLOSE:
	case WSF_PING:
	case WSF_PONG:
		/* RFC 6455 §5.5: control frames are short and never fragmented. */
		if (len > 125 || !h->fin) {
			*err = "bad WebSocket control frame";
			return -1;
		}
		break;
	default:
		*err = "unknown WebSocket opcode";
		return -1;
	}
	if (len == 126)
		need += 2;
	else if (len == 127)
		need += 8;
	if (h->masked)
		need += 4;
	if (n < need)
		return 0;
	if (len == 126) {
		len = (uint64_t)p[2] << 8 | p[3];
		if (len < 126) {
			*err = "non-minimal WebSocket length";
			return -1;
		}
	} else if (len == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
		if (len >> 63 || len < 65536) {
			*err = "bad 64-bit WebSocket length";
			return -1;
		}
	}
	h->len = len;
	if (h->masked)
		memcpy(h->mask, p + need - 4, 4);
	return (ssize_t)need;
}

size_t wsf_header_len(uint64_t len, int masked)
{
	size_t n = len < 126 ? 2 : len < 65536 ? 4 : 10;

	return n + (masked ? 4 : 0);
}

size_t wsf_encode(uint8_t *out, int opcode, int fin, uint64_t len, const uint8_t *mask)
{
	size_t n = 2;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len < 65536) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		out[1] |= 0x80;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

size_t wsf_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4], size_t phase)
{
	uint8_t m8[8];
	uint64_t m;
	size_t i = 0;

	phase &= 3;
	for (int k = 0; k < 8; k++)
		m8[k] = mask[(phase + (size_t)k) & 3];
	memcpy(&m, m8, 8);
	/* Eight bytes per step; memcpy keeps unaligned access defined. */
	for (; i + 8 <= len; i += 8) {
		uint64_t v;

		memcpy(&v, src + i, 8);
		v ^= m;
		memcpy(dst + i, &v, 8);
	}
	for (; i < len; i++)
		dst[i] = src[i] ^ m8[i & 7];
	return (phase + len) & 3;
}
