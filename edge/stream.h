/*
 * edge/stream.h - streams the edge opens on agent sessions.
 *
 * A stream carries one client connection's bytes to the agent and back.  It
 * is owned by whoever opened it (the HTTP proxy, a TCP stream listener),
 * which receives events through struct estream_ops and always ends it with
 * stream_close().  Flow control: the edge may send at most `send_credit`
 * bytes not yet acknowledged by WINDOW; it acknowledges the agent's bytes
 * with stream_consumed() as the client socket takes them.
 */
#ifndef RELAIS_EDGE_STREAM_H
#define RELAIS_EDGE_STREAM_H

#include "../common/addr.h"
#include "session.h"

struct estream_ops {
	void (*on_accept)(void *owner);
	void (*on_refuse)(void *owner, uint32_t code, const char *reason);
	/** Bytes from the agent; the owner must take all n (it was granted credit). */
	int (*on_data)(void *owner, const uint8_t *p, size_t n);
	void (*on_fin)(void *owner);
	/** RST from the agent or the session died; only stream_close() is valid now. */
	void (*on_reset)(void *owner, uint32_t code);
	/** Sending may resume (credit returned, or the session queue drained). */
	void (*on_writable)(void *owner);
	/** A DATAGRAM from the agent (UDP flows; NULL elsewhere: ignored). */
	void (*on_datagram)(void *owner, const uint8_t *p, size_t n);
	/** The configuration was reloaded: close the client if edge.yaml's
	 *  access lists no longer let it in (may be NULL). */
	void (*on_recheck)(void *owner);
};

struct estream {
	uint32_t id;
	struct esession *sess;       /* NULL once the session is gone */
	struct estream *next, *prev; /* session list */
	struct estream *hnext;       /* session hash chain */
	uint64_t send_credit;        /* bytes we may still send */
	uint64_t recv_credit;        /* bytes the agent may still send */
	uint64_t unacked;            /* consumed, not yet returned by WINDOW */
	uint64_t credit_us;          /* when the last WINDOW went (or the stream began) */
	uint32_t window, window0;    /* receive window now, and at the start */
	uint32_t probe_seq;          /* probe probe_bytes counts for */
	uint64_t probe_bytes;        /* received during that probe */
	int accepted, fin_sent, fin_recv, dead;
	int blocked; /* owner waits for on_writable */
	const struct estream_ops *ops;
	void *owner;
};

/**
 * Open a stream on session s for route r.  Sends OPEN at once; data may
 * follow before ACCEPT.  Returns the stream (owner frees with stream_close)
 * or NULL when the session cannot take it.
 */
struct estream *stream_open(struct esession *s, const struct eroute *r, const struct addr *peer,
                            const struct addr *local, int tls, const struct estream_ops *ops,
                            void *owner);

/** A PONG came: if it ends the session's probe, grow the windows the
 * round trip limits (common/window.h). */
void stream_probe_answer(struct esession *s, uint64_t value);

/** How many bytes stream_send() takes now (0: wait for on_writable). */
size_t stream_room(struct estream *st);

/**
 * Zero-copy send: room for up to max bytes (max <= stream_room(), at most
 * FRAME_MAX_DATA) in the tunnel's queue, to be filled and then passed to
 * stream_commit() with the count written (0 is allowed) before anything
 * else is sent on the session.  NULL when out of memory.
 */
uint8_t *stream_reserve(struct estream *st, size_t max);
void stream_commit(struct estream *st, size_t n);

/** Send n <= stream_room() bytes as DATA frames. 0 or -1. */
int stream_send(struct estream *st, const void *p, size_t n);

/**
 * Send one UDP datagram on a flow (no credit: datagrams may be lost).
 * Returns 0, or -1 when it was dropped because the session's queue is full.
 */
int stream_datagram(struct estream *st, const void *p, size_t n);

/** The owner delivered n bytes of the agent's data: return the credit. */
void stream_consumed(struct estream *st, size_t n);

/** Half-close our direction (FIN). */
void stream_fin(struct estream *st);

/** End the stream (RST with code unless both sides finished) and free it. */
void stream_close(struct estream *st, uint32_t code);

/** After a reload: ask the owner of every stream of every session to check
 *  its client against the new access lists (on_recheck). */
void stream_recheck_all(void);

/** Handle a stream-level frame (ACCEPT REFUSE DATA WINDOW FIN RST DATAGRAM). 0 or -1. */
int stream_on_frame(struct esession *s, const struct frame *f);

/** The session is closing: reset every stream on it. */
void stream_session_gone(struct esession *s);

/** The session's output queue drained: resume blocked senders. */
void stream_session_drained(struct esession *s);

#endif
