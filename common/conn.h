/*
 * common/conn.h - an outbound TCP connection, optionally TLS, owned by the
 * process, or an accepted one (plain, TLS, or first peeked at for its
 * ClientHello), watched by the event loop as a raw descriptor.
 *
 * Used for the agent's tunnel and https:// local services (lws's raw client
 * cannot do TLS and its WebSocket client masks one byte at a time) and for
 * the edge's public connections (TLS with relais' own certificates, and
 * half-close, which lws raw sockets do not report).  conn.c and conn.h are
 * the one place outside edge/ and agent/ that include libwebsockets.h: both
 * programs need the same raw-descriptor glue.  Every conn ends with exactly
 * one on_close, after which it is freed.
 */
#ifndef RELAIS_COMMON_CONN_H
#define RELAIS_COMMON_CONN_H

#include <libwebsockets.h>
#include <stddef.h>
#include <sys/types.h>

#include "addr.h"
#include "outq.h"

struct ssl_ctx_st;

struct conn;

struct conn_ops {
	void (*on_connected)(void *arg); /* TCP (and TLS) is up */
	void (*on_readable)(void *arg);  /* call conn_read until it returns 0 */
	void (*on_writable)(void *arg);  /* after conn_want_write */
	void (*on_close)(void *arg, const char *why);
	void (*on_peek)(void *arg); /* conn_adopt(peek = 1): bytes to look at */
};

struct conn_tls {
	const char *host;    /* SNI and the name to verify (NULL: plain TCP) */
	int verify;          /* verify chain and name (default) */
	const char *ca_file; /* NULL: system CAs */
	size_t write_buffer; /* > 0: gather TLS records while corked (bulk) */
};

/** lws protocol name the descriptor is adopted under (register conn_callback). */
#define CONN_PROTOCOL "relais-conn"

/**
 * Adopt an accepted socket fd.  With peek = 0 the conn is up (on_connected
 * follows from the loop); with peek = 1, on_peek is called whenever bytes
 * arrive until the owner calls conn_start_plain() or conn_start_tls().
 * Returns NULL with *err (fd closed) on failure.
 */
struct conn *conn_adopt(struct lws_vhost *vh, int fd, int peek, const struct conn_ops *ops,
                        void *arg, const char **err);

/** Copy up to n waiting bytes without consuming them: > 0, 0 none yet, -1 closed. */
ssize_t conn_peek(struct conn *c, void *buf, size_t n);

/** After peeking: carry on as plain TCP (on_connected follows). */
void conn_start_plain(struct conn *c);

/** After peeking: TLS server handshake with ctx (on_connected when done). */
void conn_start_tls(struct conn *c, struct ssl_ctx_st *ctx);

/** Hand the conn to a new owner (callbacks go to ops/arg from now on). */
void conn_set_owner(struct conn *c, const struct conn_ops *ops, void *arg);

/**
 * Take the socket away from the conn (for another library to adopt): returns
 * a dup() of the fd; the conn closes without callbacks.  -1 on failure.
 */
int conn_release_fd(struct conn *c);

/** The peer's and our own address. */
const struct addr *conn_peer(const struct conn *c);
const struct addr *conn_local(const struct conn *c);

/** The SNI a TLS client sent, or NULL. */
const char *conn_sni(const struct conn *c);

/**
 * Start connecting to a.  Returns the conn, or NULL with *err when nothing
 * could be started (no on_close then).
 */
struct conn *conn_open(struct lws_vhost *vh, const struct addr *a, const struct conn_tls *tls,
                       const struct conn_ops *ops, void *arg, const char **err);

#define CONN_EOF (-2)

/**
 * Read up to n bytes: > 0 bytes read, 0 nothing now, CONN_EOF when the peer
 * shut its write side (reading stops; writing still works), -1 on error
 * (on_close follows).
 */
ssize_t conn_read(struct conn *c, void *buf, size_t n);

/** Write up to n bytes: bytes taken (maybe 0, then on_writable follows), -1 on error. */
ssize_t conn_write(struct conn *c, const void *buf, size_t n);

/**
 * Write the chunks of q, resuming at *off bytes into the first one; after a
 * chunk is fully written, sent(arg, chunk) runs (for its tag: credit to
 * return) and the chunk is dropped.  Returns 1 when q is empty, 0 when the
 * socket is full (on_writable follows), -1 on error (on_close follows).
 */
int conn_send_queue(struct conn *c, struct outq *q, size_t *off,
                    void (*sent)(void *arg, const struct outq_chunk *ch), void *arg);

/** conn_ops that do nothing: for a conn between owners, or being refused. */
extern const struct conn_ops conn_nop_ops;

/** Ask for on_writable. */
void conn_want_write(struct conn *c);

/** Stop (or restart) watching for input (backpressure). */
void conn_pause(struct conn *c, int pause);

/** Hold back partial segments (TCP_CORK) while on; turning it off sends
 * them.  Brackets a burst of writes, such as TLS's one record per send.
 * With a TLS write buffer (conn_tls.write_buffer), the records are gathered
 * there instead and leave in writes of that size; off writes out the rest. */
void conn_cork(struct conn *c, int on);

/** 1 when the peer shut its write side (or hung up): nothing more will come
 * after what the socket holds. */
int conn_peer_shut(const struct conn *c);

/** Send FIN (TLS close_notify first) once everything was written. */
void conn_shutdown(struct conn *c);

/** 1 once the connection is up (its TLS handshake done, if it has TLS). */
int conn_is_up(const struct conn *c);

/** 1 when the connection failed (reset, broken pipe, hung up): not a clean end. */
int conn_broken(const struct conn *c);

/** The coming close sends a TCP RST (what is unsent is dropped): for passing
 * on a reset, so the far side sees an error and not a clean end. */
void conn_set_reset(struct conn *c);

/** Close without any further callback (the owner is going away). */
void conn_abort(struct conn *c);

/**
 * The owner is done with c after conn_shutdown(), and no callback reaches it
 * any more; c closes itself once the shutdown (TLS close_notify, then FIN)
 * is out, or after deadline_ms when the peer reads nothing.  Closing at
 * once instead would drop a close_notify still waiting for room in the
 * socket: the peer would see FIN alone, a truncation for TLS.
 */
void conn_release(struct conn *c, unsigned deadline_ms);

/** Close with a reason; on_close follows from the loop. */
void conn_close(struct conn *c, const char *why);

/** The program is destroying its lws context: close everything for good. */
void conn_exiting(void);

/** fn(from, to) is told when a connection goes on under a duplicate of its
 * descriptor (lws closed the original at POLLHUP; the rest is read from the
 * duplicate): the edge's count of connections per client follows it. */
void conn_on_moved(void (*fn)(int from, int to));

/** The lws callback for CONN_PROTOCOL. */
int conn_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);

#endif
