/*
 * agent/wsclient.h - the agent's WebSocket client (wss://, or ws:// for tests).
 *
 * The RFC 6455 opening handshake and framing over agent/conn.c (TCP, and
 * OpenSSL TLS with certificate and host name verification); libwebsockets
 * only watches the socket.  Why not lws's client: it masks every outgoing byte one at a time,
 * which capped bulk transfers from home at a fraction of the link.
 */
#ifndef RELAIS_AGENT_WSCLIENT_H
#define RELAIS_AGENT_WSCLIENT_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/addr.h"

struct wsc;

struct wsc_ops {
	/** The opening handshake succeeded. */
	void (*on_open)(void *arg);
	/** Payload bytes of a binary message; last = 1 on its final piece. 0 or -1 (close). */
	int (*on_data)(void *arg, const uint8_t *p, size_t n, int last);
	/** The output buffer has room again (after wsc_want_write). */
	void (*on_writable)(void *arg);
	/** The connection ended (or never opened); c is freed right after. */
	void (*on_close)(void *arg, const char *why);
};

struct wsc_cfg {
	const struct addr *addr; /* resolved address of the edge */
	const char *host;        /* name for SNI, verification and Host: */
	uint16_t port;
	const char *path;
	const char *protocol; /* Sec-WebSocket-Protocol */
	int tls;
	const char *ca_file; /* NULL: the system's CAs */
};

/**
 * Start connecting.  Returns the client (every client ends with exactly one
 * on_close), or NULL with *err when nothing could be started.
 */
struct wsc *wsc_connect(struct lws_vhost *vh, const struct wsc_cfg *cfg, const struct wsc_ops *ops,
                        void *arg, const char **err);

/** Writable bytes wsc_send() needs before a message (its frame header). */
#define WSC_HEADROOM 14

/**
 * Send one binary message.  data has WSC_HEADROOM writable bytes before it:
 * a large message goes to the socket from there, header included, when
 * nothing else waits (no copy; over ws:// the payload is masked in place);
 * what the socket does not take, and smaller messages, are copied into the
 * client's buffer.  Returns 1 when taken (data may be freed), 0 when the
 * buffer is full (wait for on_writable), -1 when the connection is not open.
 */
int wsc_send(struct wsc *c, uint8_t *data, size_t len);

/** on = 1 starts a batch of wsc_send() calls whose TLS records gather and
 * leave together, in one write(2) per write buffer, when on = 0 ends it.
 * Batches nest: the records leave when the outermost ends. */
void wsc_batch(struct wsc *c, int on);

/** Ask for on_writable once the buffer has room. */
void wsc_want_write(struct wsc *c);

/** wsc_close() (or a failure) ended c: its on_close is on its way. */
int wsc_closing(const struct wsc *c);

/** Bytes queued but not yet taken by the socket. */
size_t wsc_queued(const struct wsc *c);

/** Close; on_close follows from the event loop. */
void wsc_close(struct wsc *c, const char *why);

#endif
