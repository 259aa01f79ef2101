/*
 * tests/fuzz/fuzz_tunnel.c - libFuzzer target for tunnel_rx_feed()
 * (common/tunnel.c), which decodes a received message fragment by fragment.
 *
 * The first input byte seeds the fragment sizes (and, by its top bit, the
 * limit before authentication: 512-byte payloads), the rest is one message.
 * Fed in those fragments, the message must give exactly what decoding it
 * whole, frame after frame, gives: the same frames (re-encoded byte for
 * byte) in the same order, and an error exactly when the whole decode hits
 * a malformed frame or ends inside one.  Any mismatch abort()s.
 */
#include <stdlib.h>
#include <string.h>

#include "common/tunnel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LOG_MAX (2u * 80000u)

struct log {
	uint8_t buf[LOG_MAX];
	size_t len;
	int overflow;
};

static struct log want, got;

/* Append the frame's canonical encoding to the log. */
static int log_frame(void *arg, const struct frame *f)
{
	struct log *l = arg;
	size_t n;

	if (LOG_MAX - l->len < FRAME_HEADER_LEN + FRAME_MAX_PAYLOAD) {
		l->overflow = 1;
		return 0;
	}
	n = frame_encode(l->buf + l->len, LOG_MAX - l->len, f);
	if (n == 0)
		abort(); /* a frame that decoded must encode */
	l->len += n;
	return 0;
}

/* The reference: the whole message decoded in place.  0, or -1 on error. */
static int decode_whole(const uint8_t *m, size_t n, size_t rx_max)
{
	size_t off = 0;

	while (off < n) {
		struct frame f;
		const char *err = NULL;
		ssize_t r = frame_decode(m + off, n - off, &f, &err);

		if (r <= 0 || f.len > rx_max)
			return -1; /* malformed, cut at the end, or over the limit */
		log_frame(&want, &f);
		off += (size_t)r;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tunnel t;
	const uint8_t *m;
	size_t n, off = 0;
	unsigned seed;
	int rc_want, rc_got = 0;

	if (size < 1)
		return 0;
	seed = data[0];
	m = data + 1;
	n = size - 1;
	want.len = got.len = 0;
	want.overflow = got.overflow = 0;
	rc_want = decode_whole(m, n, seed & 0x80 ? 512 : FRAME_MAX_PAYLOAD);
	if (tunnel_init(&t, 0) < 0)
		abort();
	if (seed & 0x80)
		t.rx_max = 512;
	do {
		/* Fragment sizes from 1 to 4096, varied by the seed. */
		size_t k;

		seed = seed * 1103515245u + 12345u;
		k = 1 + (seed >> 8) % (seed & 1 ? 17 : 4096);
		if (k > n - off)
			k = n - off;
		{
			const char *err = NULL;

			rc_got =
			    tunnel_rx_feed(&t, m + off, k, off + k == n, log_frame, &got, &err);
			if (rc_got < 0 && (err == NULL || err[0] == '\0'))
				abort();
		}
		off += k;
	} while (off < n && rc_got == 0);
	tunnel_free(&t);
	if ((rc_want < 0) != (rc_got < 0))
		abort();
	if (want.overflow || got.overflow)
		return 0;
	/* On an error the fragments may stop before frames the whole decode
	 * passed on only if those came after the error: same frames either way. */
	if (want.len != got.len || memcmp(want.buf, got.buf, want.len) != 0)
		abort();
	return 0;
}
