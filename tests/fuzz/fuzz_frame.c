/*
 * tests/fuzz/fuzz_frame.c - libFuzzer target for proto/frame.c.
 *
 * 1. Decode the input the way a receiver does: frame after frame, advancing
 *    by the bytes consumed, stopping at FRAME_INCOMPLETE or FRAME_ERROR.
 *    Every decoded frame must re-encode to exactly the bytes it came from
 *    (the encoding is canonical) and decode again to the same frame.
 * 2. Read the input as a raw struct frame and encode it: whatever the
 *    encoder accepts, the decoder must accept and reproduce byte for byte.
 * Any mismatch abort()s.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX (FRAME_HEADER_LEN + FRAME_MAX_DATA)

static uint8_t out1[OUT_MAX], out2[OUT_MAX];

/* f was decoded from wire[0..n): check encode(f) == wire and its decode. */
static void fuzz_reencode(const uint8_t *wire, size_t n, const struct frame *f)
{
	struct frame g;
	const char *err = NULL;
	size_t m;

	if (frame_check(f, &err) != 0)
		abort();
	m = frame_encode(out1, sizeof(out1), f);
	if (m != n || memcmp(out1, wire, n) != 0)
		abort();
	if (frame_encode(out2, n - 1, f) != 0)
		abort();
	if (frame_decode(out1, m, &g, &err) != (ssize_t)m)
		abort();
	if (g.type != f->type || g.flags != f->flags || g.stream != f->stream || g.len != f->len)
		abort();
	if (frame_encode(out2, sizeof(out2), &g) != m || memcmp(out1, out2, m) != 0)
		abort();
}

static void fuzz_receive(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		struct frame f;
		const char *err = NULL;
		ssize_t rc = frame_decode(data + off, size - off, &f, &err);

		if (rc == FRAME_ERROR) {
			if (err == NULL || err[0] == '\0')
				abort();
			break;
		}
		if (rc == FRAME_INCOMPLETE)
			break;
		if (rc < FRAME_HEADER_LEN || (size_t)rc > size - off)
			abort();
		if (f.len > FRAME_MAX_PAYLOAD || f.payload != data + off + FRAME_HEADER_LEN)
			abort();
		fuzz_reencode(data + off, (size_t)rc, &f);
		off += (size_t)rc;
	}
}

static void fuzz_encode_struct(const uint8_t *data, size_t size)
{
	struct frame f, g;
	const char *err = NULL;
	size_t rest, m;

	if (size < sizeof(f))
		return;
	memcpy(&f, data, sizeof(f));
	rest = size - sizeof(f);
	f.payload = rest ? data + sizeof(f) : NULL;
	if (f.len > rest && f.len <= FRAME_MAX_DATA)
		f.len = (uint32_t)(f.len % (rest + 1));
	m = frame_encode(out1, sizeof(out1), &f);
	if ((m > 0) != (frame_check(&f, &err) == 0))
		abort();
	if (m == 0)
		return;
	if (frame_decode(out1, m, &g, &err) != (ssize_t)m)
		abort();
	if (frame_encode(out2, sizeof(out2), &g) != m || memcmp(out1, out2, m) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_receive(data, size);
	fuzz_encode_struct(data, size);
	return 0;
}
