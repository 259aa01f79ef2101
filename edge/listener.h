/*
 * edge/listener.h - listening sockets owned by relais (not lws vhosts), so
 * they can be opened and closed at runtime.  Each is adopted into the event
 * loop as a raw file descriptor; readiness means "accept".
 */
#ifndef RELAIS_EDGE_LISTENER_H
#define RELAIS_EDGE_LISTENER_H

#include <libwebsockets.h>

#include "../common/addr.h"

struct listener;

/** Called for each accepted connection; the handler owns fd (close or adopt it). */
typedef void (*listener_accept_fn)(struct listener *l, int fd, const struct addr *peer,
                                   const struct addr *local);

struct listener {
	int fd;
	struct lws *wsi;
	struct addr addr;
	listener_accept_fn on_accept;
	void *arg;
	char name[32];              /* "http", "admin" ... for logs */
	lws_sorted_usec_list_t sul; /* resumes accepting after a resource error */
	int backoff;                /* not polled: out of descriptors or memory */
	uint64_t warned_us;         /* last resource warning (one per second) */
	uint64_t failures;          /* resource errors since that warning */
	int reserve_ok;             /* may use the reserved descriptors (admin) */
	int unlimited;              /* not held to listen.max_connections_per_client */
	int pool;                   /* enum clients_pool its connections count in */
};

/**
 * Public clients never get the last descriptors: an accepted connection whose
 * descriptor is edge.fd_cap or above (the kernel hands out the lowest free
 * one, so every descriptor below it is in use) is closed at once and its
 * listener pauses, unless the listener is reserve_ok.  What is kept serves
 * the tunnel's agents, stream ports reopened for them, certificate and log
 * files, and the ACME client: a flood of public connections cannot keep a
 * reconnecting agent out.
 */
#define LISTENER_RESERVE_MAX 512 /* kept: min(this, a quarter of the limit) */

/* listener_open() flags */
#define LISTENER_DUAL_STACK 1 /* "::" takes IPv4 clients too (else IPv6 only) */

/**
 * Bind and listen on addr (SO_REUSEADDR, non-blocking) and add it to the
 * loop.  An IPv6 address is IPv6 only, except the wildcard with
 * LISTENER_DUAL_STACK; IPv4 clients of such a listener are handed over with
 * AF_INET addresses.  Returns a listener the caller frees with
 * listener_close(), or NULL with *err set to a strerror() text.
 */
struct listener *listener_open(const struct addr *addr, const char *name, int flags,
                               listener_accept_fn on_accept, void *arg, const char **err);

/** Stop listening and free l. */
void listener_close(struct listener *l);

/** The lws protocol callback for adopted listening fds (registered by edge/main.c). */
int listener_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

#endif
