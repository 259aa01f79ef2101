/*
 * common/tunnel.h - transport-independent half of a tunnel connection:
 * decoding of received WebSocket messages into frames, and the two
 * output queues (control frames jump ahead of stream data).
 *
 * The libwebsockets glue lives in edge/tunnel.c and agent/tunnel.c.
 */
#ifndef RELAIS_COMMON_TUNNEL_H
#define RELAIS_COMMON_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "outq.h"
#include "../proto/frame.h"

#define TUNNEL_MSG_CAP (256u * 1024u) /* preferred outgoing message size */
/* Queued output beyond this means the peer does not read: stream data stops
 * at a 4 MiB high-water mark, so only replies (PONG, RST...) to a flood of
 * its own frames can get here.  Sending then fails (tunnel_backlogged()). */
#define TUNNEL_QUEUE_MAX (16u * 1024u * 1024u)

struct tunnel {
	struct outq ctl;  /* WINDOW, PING, PONG, handshake */
	struct outq data; /* everything else, in order */
	/* Receiving: frames are decoded as the bytes come, not per message. */
	uint8_t *rx;    /* a frame cut by a fragment end, being completed */
	size_t rxlen;   /* bytes of it in rx */
	size_t rx_cap;  /* bytes allocated for rx (allocated when first needed) */
	size_t rx_max;  /* largest payload accepted now (less before authentication) */
	size_t msg_len; /* bytes of the current message so far */
};

/** Set up t; headroom is the transport's per-message header room (LWS_PRE). 0 or -1. */
int tunnel_init(struct tunnel *t, size_t headroom);

/** Free queues and buffers. */
void tunnel_free(struct tunnel *t);

/**
 * Feed a received fragment of the current WebSocket message (last: it ends
 * the message) and call fn(arg, frame) for each frame as it completes; stops
 * when fn returns non-zero (returned as is).  Frames are decoded in place;
 * only one cut by the end of a fragment is copied.  Returns 0, or -1
 * with *err for a malformed frame, a payload over t->rx_max (judged from the
 * header, before the payload arrives, however the message is cut), a
 * message over FRAME_MAX_MESSAGE or a frame cut at the message end.
 */
int tunnel_rx_feed(struct tunnel *t, const uint8_t *in, size_t len, int last,
                   int (*fn)(void *arg, const struct frame *f), void *arg, const char **err);

/** The peer leaves TUNNEL_QUEUE_MAX or more queued for it: sending fails. */
int tunnel_backlogged(const struct tunnel *t);

/** Queue a frame (control types on the control queue).  0, or -1 (encode error /
 * memory / backlogged). */
int tunnel_send(struct tunnel *t, const struct frame *f);

/** Queue a DATA (or DATAGRAM) frame copying len <= FRAME_MAX_DATA bytes. 0 or -1. */
int tunnel_send_data(struct tunnel *t, uint8_t type, uint32_t stream, const void *data, size_t len);

/**
 * Zero-copy DATA: room for a payload of up to max <= FRAME_MAX_DATA bytes
 * in the data queue (read the socket straight into it), then
 * tunnel_data_commit() with the bytes actually written.  NULL when out of
 * memory.
 */
uint8_t *tunnel_data_reserve(struct tunnel *t, size_t max);
void tunnel_data_commit(struct tunnel *t, uint8_t type, uint32_t stream, size_t n);

/**
 * The next message to send, control first: returns its bytes (with headroom
 * before them) and length, and sets *q to the queue to outq_pop() after the
 * write; NULL when nothing is queued.
 */
uint8_t *tunnel_next_message(struct tunnel *t, size_t *len, struct outq **q);

/** Bytes of stream data queued (for backpressure watermarks). */
size_t tunnel_data_queued(const struct tunnel *t);

#endif
