/*
 * common/wsframe.h - WebSocket frame headers (RFC 6455 §5.2) and masking.
 *
 * Pure codec used by the agent's own WebSocket client: libwebsockets masks
 * client frames one byte at a time, which cost the agent most of its CPU on
 * bulk transfers; this codec masks eight bytes at a time.
 */
#ifndef RELAIS_COMMON_WSFRAME_H
#define RELAIS_COMMON_WSFRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WSF_MAX_HEADER 14

enum wsf_opcode {
	WSF_CONT = 0x0,
	WSF_TEXT = 0x1,
	WSF_BINARY = 0x2,
	WSF_CLOSE = 0x8,
	WSF_PING = 0x9,
	WSF_PONG = 0xa
};

struct wsf_header {
	int fin;
	int opcode;
	int masked;
	uint8_t mask[4];
	uint64_t len; /* payload length */
};

/**
 * Decode the frame header at p[0..n).  Returns its length (2..14), 0 when
 * more bytes are needed, or -1 with *err for reserved bits, unknown opcodes,
 * a control frame longer than 125 bytes or fragmented, a non-minimal or
 * 64-bit length with the top bit set.
 */
ssize_t wsf_decode(const uint8_t *p, size_t n, struct wsf_header *h, const char **err);

/**
 * Write a header for a frame of len payload bytes into out (WSF_MAX_HEADER
 * bytes); mask is NULL for an unmasked frame.  Returns the header length.
 */
size_t wsf_encode(uint8_t *out, int opcode, int fin, uint64_t len, const uint8_t *mask);

/** Length of the header wsf_encode() writes for len bytes. */
size_t wsf_header_len(uint64_t len, int masked);

/**
 * dst[i] = src[i] ^ mask[(phase + i) % 4] for i < len; dst may equal src.
 * Returns the phase after the last byte.
 */
size_t wsf_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4], size_t phase);

#endif
