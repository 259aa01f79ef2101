/*
 * common/tunnel.c - reassembly and output queues of a tunnel (see tunnel.h).
 */
#include <stdlib.h>
#include <string.h>

#include "tunnel.h"

/* Control frames are small and must not wait behind bulk data: a PONG
 * delayed by megabytes of DATA would look like a dead path. */
static int tunnel_is_control(uint8_t type)
{
	switch (type) {
	case FRAME_WINDOW:
	case FRAME_PING:
	case FRAME_PONG:
	case FRAME_HELLO:
	case FRAME_AUTH:
	case FRAME_WELCOME:
	case FRAME_REJECT:
		return 1;
	default:
		return 0;
	}
}

int tunnel_init(struct tunnel *t, size_t headroom)
{
	memset(t, 0, sizeof(*t));
	outq_init(&t->ctl, headroom, 4096);
	outq_init(&t->data, headroom, TUNNEL_MSG_CAP);
	t->rx_max = FRAME_MAX_PAYLOAD;
	return 0;
}

void tunnel_free(struct tunnel *t)
{
	outq_free(&t->ctl);
	outq_free(&t->data);
	free(t->rx);
	t->rx = NULL;
	t->rxlen = 0;
	t->rx_cap = 0;
}

/* A header (whole) announcing more payload than accepted now. */
static int tunnel_rx_too_big(const struct tunnel *t, const uint8_t *hdr, const char **err)
{
	if (frame_get_len(hdr) <= t->rx_max)
		return 0;
	*err = t->rx_max < FRAME_MAX_PAYLOAD ? "frame too large before authentication"
	                                     : "frame too large";
	return 1;
}

/* Keep the start of a frame cut by the end of a fragment. */
static int tunnel_rx_keep(struct tunnel *t, const uint8_t *in, size_t len, const char **err)
{
	size_t need = FRAME_HEADER_LEN + t->rx_max;

	if (t->rx_cap < need) {
		uint8_t *p = realloc(t->rx, need);

		if (!p) {
			*err = "out of memory";
			return -1;
		}
		t->rx = p;
		t->rx_cap = need;
	}
	memcpy(t->rx, in, len);
	t->rxlen = len;
	return 0;
}

/*
 * Frames are passed on whole: a DATA payload cut in pieces would become as
 * many writes to the client.  Only a frame cut by the end of a fragment is
 * copied (into rx) to be completed; the others are decoded in place.
 */
int tunnel_rx_feed(struct tunnel *t, const uint8_t *in, size_t len, int last,
                   int (*fn)(void *arg, const struct frame *f), void *arg, const char **err)
{
	int rc = 0;

	if (len > FRAME_MAX_MESSAGE - t->msg_len) {
		*err = "message exceeds the 1 MiB limit";
		return -1;
	}
	t->msg_len += len;
	while (len && !rc) {
		struct frame f;
		size_t want, k;
		ssize_t r;

		if (!t->rxlen) {
			r = frame_decode(in, len, &f, err);
			if (r == FRAME_INCOMPLETE) { /* keep the start of a frame cut here */
				if ((len >= FRAME_HEADER_LEN && tunnel_rx_too_big(t, in, err)) ||
				    tunnel_rx_keep(t, in, len, err) < 0)
					return -1;
				break;
			}
			if (r < 0 || tunnel_rx_too_big(t, in, err))
				return -1;
			in += r;
			len -= (size_t)r;
			rc = fn(arg, &f);
			continue;
		}
		/* Complete the cut frame in rx: its header first, then the payload
		 * the header announced (checked by frame_decode() before that). */
		want = t->rxlen < FRAME_HEADER_LEN ? FRAME_HEADER_LEN
		                                   : FRAME_HEADER_LEN + frame_get_len(t->rx);
		k = len < want - t->rxlen ? len : want - t->rxlen;
		memcpy(t->rx + t->rxlen, in, k);
		t->rxlen += k;
		in += k;
		len -= k;
		r = frame_decode(t->rx, t->rxlen, &f, err);
		if (r == FRAME_INCOMPLETE) {
			if (t->rxlen >= FRAME_HEADER_LEN && tunnel_rx_too_big(t, t->rx, err))
				return -1;
			continue;
		}
		if (r < 0 || tunnel_rx_too_big(t, t->rx, err))
			return -1;
		t->rxlen = 0;
		rc = fn(arg, &f);
	}
	if (last) {
		int cut = t->rxlen != 0;

		t->rxlen = 0;
		t->msg_len = 0;
		if (cut && !rc) {
			*err = "frame cut at the end of a message";
			return -1;
		}
	}
	return rc;
}

int tunnel_backlogged(const struct tunnel *t)
{
	return outq_bytes(&t->ctl) + outq_bytes(&t->data) >= TUNNEL_QUEUE_MAX;
}

int tunnel_send(struct tunnel *t, const struct frame *f)
{
	struct outq *q = tunnel_is_control(f->type) ? &t->ctl : &t->data;
	size_t need = FRAME_HEADER_LEN + FRAME_MAX_PAYLOAD;
	uint8_t *p;
	size_t n;

	if (f->type != FRAME_DATA && f->type != FRAME_DATAGRAM)
		need = FRAME_HEADER_LEN + 512;
	if (tunnel_backlogged(t))
		return -1;
	p = outq_reserve(q, need);
	if (!p)
		return -1;
	n = frame_encode(p, need, f);
	if (!n)
		return -1;
	outq_commit(q, n);
	return 0;
}

int tunnel_send_data(struct tunnel *t, uint8_t type, uint32_t stream, const void *data, size_t len)
{
	uint8_t *p;

	if (len > FRAME_MAX_DATA || tunnel_backlogged(t))
		return -1;
	p = outq_reserve(&t->data, FRAME_HEADER_LEN + len);
	if (!p)
		return -1;
	frame_put_header(p, type, 0, stream, (uint32_t)len);
	memcpy(p + FRAME_HEADER_LEN, data, len);
	outq_commit(&t->data, FRAME_HEADER_LEN + len);
	return 0;
}

uint8_t *tunnel_data_reserve(struct tunnel *t, size_t max)
{
	uint8_t *p;

	if (max > FRAME_MAX_DATA || tunnel_backlogged(t))
		return NULL;
	p = outq_reserve(&t->data, FRAME_HEADER_LEN + max);
	return p ? p + FRAME_HEADER_LEN : NULL;
}

void tunnel_data_commit(struct tunnel *t, uint8_t type, uint32_t stream, size_t n)
{
	/* The reservation is the tail chunk's free space: the header goes just
	 * before the payload the caller wrote there. */
	uint8_t *hdr = t->data.tail->buf + t->data.headroom + t->data.tail->len;

	frame_put_header(hdr, type, 0, stream, (uint32_t)n);
	outq_commit(&t->data, FRAME_HEADER_LEN + n);
}

uint8_t *tunnel_next_message(struct tunnel *t, size_t *len, struct outq **q)
{
	uint8_t *p = outq_head(&t->ctl, len);

	if (p) {
		*q = &t->ctl;
		return p;
	}
	p = outq_head(&t->data, len);
	if (p)
		*q = &t->data;
	return p;
}

size_t tunnel_data_queued(const struct tunnel *t)
{
	return outq_bytes(&t->data);
}
