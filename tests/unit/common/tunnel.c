/* tests/unit/common/tunnel.c - decoding received messages as they come. */
#include <stdint.h>
#include <stdlib.h>

#include "../../../common/tunnel.h"
#include "../unit.h"

/* What the callback saw: DATA bytes per stream, other frames in order. */
struct seen {
	uint8_t data[3][200000];
	size_t data_len[3];
	uint8_t types[64];
	uint32_t windows[64];
	size_t nframes; /* non-DATA frames */
	size_t calls;
	int stop_at; /* return 1 on this call (1-based), 0: never */
};

static int on_frame(void *arg, const struct frame *f)
{
	struct seen *s = arg;

	s->calls++;
	if (f->type == FRAME_DATA) {
		if (f->stream < 3 && s->data_len[f->stream] + f->len <= sizeof(s->data[0])) {
			memcpy(s->data[f->stream] + s->data_len[f->stream], f->payload, f->len);
			s->data_len[f->stream] += f->len;
		}
	} else if (s->nframes < 64) {
		s->types[s->nframes] = f->type;
		s->windows[s->nframes] = f->type == FRAME_WINDOW ? f->u.window : 0;
		s->nframes++;
	}
	return s->stop_at && (int)s->calls == s->stop_at;
}

static size_t put(uint8_t *out, const struct frame *f)
{
	return frame_encode(out, FRAME_HEADER_LEN + FRAME_MAX_PAYLOAD, f);
}

/* A message: DATA on streams 1 and 2 (one of 65536 bytes), WINDOW, PING. */
static size_t build(uint8_t *msg, uint8_t *d1, uint8_t *d2)
{
	struct frame f;
	size_t n = 0;

	for (size_t i = 0; i < 65536; i++)
		d1[i] = (uint8_t)(i * 31 + 7);
	for (size_t i = 0; i < 1000; i++)
		d2[i] = (uint8_t)(i ^ 0x5a);
	memset(&f, 0, sizeof(f));
	f.type = FRAME_DATA, f.stream = 1, f.len = 65536, f.payload = d1;
	n += put(msg + n, &f);
	memset(&f, 0, sizeof(f));
	f.type = FRAME_WINDOW, f.stream = 1, f.u.window = 12345;
	n += put(msg + n, &f);
	memset(&f, 0, sizeof(f));
	f.type = FRAME_DATA, f.stream = 2, f.len = 1000, f.payload = d2;
	n += put(msg + n, &f);
	memset(&f, 0, sizeof(f));
	f.type = FRAME_DATA, f.stream = 2, f.len = 0, f.payload = d2;
	n += put(msg + n, &f);
	memset(&f, 0, sizeof(f));
	f.type = FRAME_PING, f.u.ping = 42;
	n += put(msg + n, &f);
	return n;
}

static uint8_t msg[2 * FRAME_MAX_DATA], d1[FRAME_MAX_DATA], d2[1000];
static struct seen seen;

/* Every split gives the same frames, DATA bytes in order. */
static void test_any_split_same_frames(void)
{
	static const size_t steps[] = {1, 3, 9, 10, 11, 4096, 16384, 70000, 200000};
	size_t n = build(msg, d1, d2);

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct tunnel t;
		const char *err = NULL;
		int rc = 0;

		CHECK(tunnel_init(&t, 0) == 0);
		memset(&seen, 0, sizeof(seen));
		for (size_t off = 0; off < n && !rc; off += steps[i]) {
			size_t k = n - off < steps[i] ? n - off : steps[i];

			rc = tunnel_rx_feed(&t, msg + off, k, off + k == n, on_frame, &seen, &err);
		}
		CHECK(rc == 0);
		CHECK(seen.data_len[1] == 65536 && memcmp(seen.data[1], d1, 65536) == 0);
		CHECK(seen.data_len[2] == 1000 && memcmp(seen.data[2], d2, 1000) == 0);
		CHECK(seen.nframes == 2);
		CHECK(seen.types[0] == FRAME_WINDOW && seen.windows[0] == 12345);
		CHECK(seen.types[1] == FRAME_PING);
		/* Ready for the next message. */
		CHECK(t.rxlen == 0 && t.msg_len == 0);
		tunnel_free(&t);
	}
}

static void test_frame_cut_at_message_end(void)
{
	size_t n = build(msg, d1, d2);
	size_t cuts[] = {5, FRAME_HEADER_LEN, 100, FRAME_HEADER_LEN + 65536 + 3, n - 1};

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct tunnel t;
		const char *err = NULL;

		CHECK(tunnel_init(&t, 0) == 0);
		memset(&seen, 0, sizeof(seen));
		CHECK(tunnel_rx_feed(&t, msg, cuts[i], 1, on_frame, &seen, &err) == -1);
		CHECK(err && strcmp(err, "frame cut at the end of a message") == 0);
		/* The state is reset: a whole message after it decodes. */
		CHECK(tunnel_rx_feed(&t, msg, n, 1, on_frame, &seen, &err) == 0);
		CHECK(seen.nframes >= 2 && seen.types[seen.nframes - 1] == FRAME_PING);
		tunnel_free(&t);
	}
}

static void test_malformed_and_oversize(void)
{
	struct tunnel t;
	const char *err = NULL;
	uint8_t bad[FRAME_HEADER_LEN] = {99, 0, 0, 0, 0, 1, 0, 0, 0, 0}; /* unknown type */
	uint8_t big[FRAME_HEADER_LEN];
	static uint8_t chunk[256 * 1024];

	CHECK(tunnel_init(&t, 0) == 0);
	memset(&seen, 0, sizeof(seen));
	/* Unknown type, whether the header arrives whole or byte by byte. */
	CHECK(tunnel_rx_feed(&t, bad, sizeof(bad), 1, on_frame, &seen, &err) == -1);
	CHECK(err && strcmp(err, "unknown frame type") == 0);
	tunnel_free(&t);
	CHECK(tunnel_init(&t, 0) == 0);
	err = NULL;
	for (size_t i = 0; i < sizeof(bad) - 1; i++)
		CHECK(tunnel_rx_feed(&t, bad + i, 1, 0, on_frame, &seen, &err) == 0);
	CHECK(tunnel_rx_feed(&t, bad + 9, 1, 0, on_frame, &seen, &err) == -1);
	tunnel_free(&t);

	/* A DATA header announcing more than FRAME_MAX_DATA is refused at once. */
	frame_put_header(big, FRAME_DATA, 0, 1, FRAME_MAX_DATA + 1);
	CHECK(tunnel_init(&t, 0) == 0);
	err = NULL;
	CHECK(tunnel_rx_feed(&t, big, sizeof(big), 0, on_frame, &seen, &err) == -1);
	CHECK(err != NULL);
	tunnel_free(&t);

	/* A message over 1 MiB in fragments of DATA frames. */
	CHECK(tunnel_init(&t, 0) == 0);
	err = NULL;
	for (size_t off = 0; off + FRAME_HEADER_LEN + 65536 <= sizeof(chunk);
	     off += FRAME_HEADER_LEN + 65536)
		frame_put_header(chunk + off, FRAME_DATA, 0, 1, 65536);
	{
		int rc = 0;
		size_t fed = 0;

		while (rc == 0 && fed <= FRAME_MAX_MESSAGE) {
			/* three whole frames per fragment, and the rest of the chunk */
			size_t k = 3 * (FRAME_HEADER_LEN + 65536);

			rc = tunnel_rx_feed(&t, chunk, k, 0, on_frame, &seen, &err);
			fed += k;
		}
		CHECK(rc == -1);
		CHECK(err && strcmp(err, "message exceeds the 1 MiB limit") == 0);
		CHECK(fed > FRAME_MAX_MESSAGE); /* refused only past the limit */
	}
	tunnel_free(&t);
}

/* A non-zero callback result stops decoding and is returned as is. */
static void test_callback_stops(void)
{
	struct tunnel t;
	const char *err = NULL;
	size_t n = build(msg, d1, d2);

	CHECK(tunnel_init(&t, 0) == 0);
	memset(&seen, 0, sizeof(seen));
	seen.stop_at = 2; /* the WINDOW after the first DATA */
	CHECK(tunnel_rx_feed(&t, msg, n, 1, on_frame, &seen, &err) == 1);
	CHECK(seen.calls == 2);
	tunnel_free(&t);
}

/* rx_max: a header announcing more is refused as soon as it is whole, and a
 * smaller frame cut anywhere still arrives; raising it lets big ones in. */
static void test_rx_max(void)
{
	struct tunnel t;
	const char *err = NULL;
	uint8_t hdr[FRAME_HEADER_LEN + 100];
	struct frame f = {.type = FRAME_PING, .u.ping = 7};
	size_t n;

	CHECK(tunnel_init(&t, 0) == 0);
	CHECK(t.rx == NULL); /* nothing allocated until a frame is cut */
	t.rx_max = 512;
	memset(&seen, 0, sizeof(seen));
	frame_put_header(hdr, FRAME_DATA, 0, 1, 65536);
	CHECK(tunnel_rx_feed(&t, hdr, sizeof(hdr), 0, on_frame, &seen, &err) == -1);
	CHECK(err && strcmp(err, "frame too large before authentication") == 0);
	tunnel_free(&t);

	/* the same header byte by byte: refused at its tenth byte */
	CHECK(tunnel_init(&t, 0) == 0);
	t.rx_max = 512;
	err = NULL;
	for (size_t i = 0; i < FRAME_HEADER_LEN - 1; i++)
		CHECK(tunnel_rx_feed(&t, hdr + i, 1, 0, on_frame, &seen, &err) == 0);
	CHECK(tunnel_rx_feed(&t, hdr + 9, 1, 0, on_frame, &seen, &err) == -1);
	CHECK(err != NULL);
	tunnel_free(&t);

	/* small frames pass, cut or not; then a raised limit lets 64 KiB in */
	CHECK(tunnel_init(&t, 0) == 0);
	t.rx_max = 512;
	n = put(msg, &f);
	CHECK(tunnel_rx_feed(&t, msg, 3, 0, on_frame, &seen, &err) == 0);
	CHECK(t.rx_cap == FRAME_HEADER_LEN + 512);
	CHECK(tunnel_rx_feed(&t, msg + 3, n - 3, 1, on_frame, &seen, &err) == 0);
	CHECK(seen.nframes == 1 && seen.types[0] == FRAME_PING);
	t.rx_max = FRAME_MAX_PAYLOAD;
	n = build(msg, d1, d2);
	CHECK(tunnel_rx_feed(&t, msg, 1000, 0, on_frame, &seen, &err) == 0);
	CHECK(tunnel_rx_feed(&t, msg + 1000, n - 1000, 1, on_frame, &seen, &err) == 0);
	CHECK(seen.data_len[1] == 65536 && memcmp(seen.data[1], d1, 65536) == 0);
	tunnel_free(&t);
}

/* Sending fails once TUNNEL_QUEUE_MAX bytes wait for the peer. */
static void test_backlogged(void)
{
	struct tunnel t;
	struct frame f = {.type = FRAME_PONG};
	size_t frames = 0;

	CHECK(tunnel_init(&t, 0) == 0);
	while (!tunnel_backlogged(&t) && frames < TUNNEL_QUEUE_MAX) {
		CHECK(tunnel_send(&t, &f) == 0);
		frames++;
	}
	CHECK(tunnel_backlogged(&t));
	CHECK(frames * (FRAME_HEADER_LEN + 8) >= TUNNEL_QUEUE_MAX);
	CHECK(tunnel_send(&t, &f) == -1);
	CHECK(tunnel_send_data(&t, FRAME_DATA, 1, "x", 1) == -1);
	CHECK(tunnel_data_reserve(&t, 100) == NULL);
	tunnel_free(&t);
}

int main(void)
{
	RUN(test_any_split_same_frames);
	RUN(test_frame_cut_at_message_end);
	RUN(test_malformed_and_oversize);
	RUN(test_callback_stops);
	RUN(test_rx_max);
	RUN(test_backlogged);
	UNIT_END();
}
