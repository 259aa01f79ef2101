/*
 * agent/conn.h - an outbound TCP connection, optionally TLS, owned by the
 * agent and watched by the event loop (adopted as a raw descriptor).
 *
 * Used for the tunnel to the edge and for https:// local services: lws's
 * raw client cannot do TLS (LWS-NOTES) and its WebSocket client masks one
 * byte at a time.  Every conn ends with exactly one on_close, after which it
 * is freed.
 */
#ifndef RELAIS_AGENT_CONN_H
#define RELAIS_AGENT_CONN_H

#include <libwebsockets.h>
#include <stddef.h>
#include <sys/types.h>

#include "../common/addr.h"

struct conn;

struct conn_ops {
	void (*on_connected)(void *arg); /* TCP (and TLS) is up */
	void (*on_readable)(void *arg);  /* call conn_read until it returns 0 */
	void (*on_writable)(void *arg);  /* after conn_want_write */
	void (*on_close)(void *arg, const char *why);
};

struct conn_tls {
	const char *host;    /* SNI and the name to verify (NULL: plain TCP) */
	int verify;          /* verify chain and name (default) */
	const char *ca_file; /* NULL: system CAs */
};

/** lws protocol name the descriptor is adopted under (register conn_callback). */
#define CONN_PROTOCOL "relais-conn"

/**
 * Start connecting to a.  Returns the conn, or NULL with *err when nothing
 * could be started (no on_close then).
 */
struct conn *conn_open(struct lws_vhost *vh, const struct addr *a, const struct conn_tls *tls,
                       const struct conn_ops *ops, void *arg, const char **err);

/** Read up to n bytes: > 0 bytes read, 0 nothing now, -1 closed (on_close follows). */
ssize_t conn_read(struct conn *c, void *buf, size_t n);

/** Write up to n bytes: bytes taken (maybe 0, then on_writable follows), -1 on error. */
ssize_t conn_write(struct conn *c, const void *buf, size_t n);

/** Ask for on_writable. */
void conn_want_write(struct conn *c);

/** Stop (or restart) watching for input (backpressure). */
void conn_pause(struct conn *c, int pause);

/** Send FIN (TLS close_notify first) once everything was written. */
void conn_shutdown(struct conn *c);

/** Close without any further callback (the owner is going away). */
void conn_abort(struct conn *c);

/** Close with a reason; on_close follows from the loop. */
void conn_close(struct conn *c, const char *why);

/** The lws callback for CONN_PROTOCOL. */
int conn_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);

#endif
