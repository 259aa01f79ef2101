/*
 * agent/resolve.h - name resolution off the event loop.
 *
 * getaddrinfo() blocks, and lws 4.1's async DNS is not built in Debian's
 * package, so each lookup runs in a short-lived thread; the answer is handed
 * back on the loop thread (lws_cancel_service + EVENT_WAIT_CANCELLED).
 * Numeric addresses are answered at once, without a thread.
 */
#ifndef RELAIS_AGENT_RESOLVE_H
#define RELAIS_AGENT_RESOLVE_H

#include <libwebsockets.h>
#include <stdint.h>

#include "../common/addr.h"

struct resolve;

/** Result callback on the loop thread: err is NULL on success (a filled). */
typedef void (*resolve_fn)(void *arg, const struct addr *a, const char *err);

/**
 * Look up host:port (IPv4 or IPv6, first answer).  Returns a handle that
 * resolve_cancel() accepts until the callback has run, or NULL when the
 * answer was already delivered (numeric host) or nothing could start (the
 * callback then ran with an error).
 */
struct resolve *resolve_start(struct lws_context *ctx, const char *host, uint16_t port,
                              resolve_fn fn, void *arg);

/** Forget a pending lookup: its callback will not run. */
void resolve_cancel(struct resolve *r);

/** Deliver finished lookups; call from LWS_CALLBACK_EVENT_WAIT_CANCELLED. */
void resolve_dispatch(void);

/** Before the lws context is destroyed: lookups still running stop waking it. */
void resolve_shutdown(void);

#endif
