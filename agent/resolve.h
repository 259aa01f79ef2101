/*
 * agent/resolve.h - name resolution off the event loop.
 *
 * getaddrinfo() blocks, and lws 4.1's async DNS is not built in Debian's
 * package, so each lookup runs in a short-lived thread; the answer is handed
 * back on the loop thread (lws_cancel_service + EVENT_WAIT_CANCELLED).  One
 * lookup per host and port is in flight at a time: callers asking for the
 * same meanwhile wait for its answer, so threads stay as few as the names.
 * Numeric addresses need no lookup: resolve_numeric() answers them at once.
 */
#ifndef RELAIS_AGENT_RESOLVE_H
#define RELAIS_AGENT_RESOLVE_H

#include <libwebsockets.h>
#include <stdint.h>

#include "../common/addr.h"

struct resolve;

/* Addresses kept from one lookup, in getaddrinfo()'s order (RFC 6724: an
 * IPv6 address first where IPv6 works).  A connection tries them in turn. */
#define RESOLVE_MAX 4

/**
 * Result callback on the loop thread: err is NULL on success, with a[0..n)
 * the addresses (1 <= n <= RESOLVE_MAX).
 */
typedef void (*resolve_fn)(void *arg, const struct addr *a, size_t n, const char *err);

/**
 * Fill *a when host is a numeric IPv4 or IPv6 address: 0, or -1 when it is a
 * name (resolve_start() then).
 */
int resolve_numeric(const char *host, uint16_t port, struct addr *a);

/**
 * Look up host:port (IPv4 and IPv6, up to RESOLVE_MAX answers).  The callback never runs
 * before this returns (so it may free arg): it runs later from
 * resolve_dispatch(), unless resolve_cancel() came first.  NULL when out of
 * memory: the callback will not run.
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
