/*
 * agent/resolve.c - name resolution off the event loop (see resolve.h).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

/* One getaddrinfo() in flight for host:port: every caller that asks for
 * the same while it runs waits for its answer, so a flood of connections
 * to a service whose DNS is slow costs one thread, not one each. */
struct lookup {
	struct lookup *next;
	struct lws_context *ctx;
	char host[256];
	char port[8];
	int done;
	struct resolve *waiters, **tail; /* in the order they came */
	struct addr a[RESOLVE_MAX];
	size_t n;
	char err[400];
};

/* One caller's wait (what resolve_start() returns). */
struct resolve {
	struct resolve *next;
	resolve_fn fn;
	void *arg;
	int canceled;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lookup *pending; /* all started lookups, done or not */
static int shutting_down;      /* the loop is gone: never wake it */

static void *resolve_thread(void *p)
{
	struct lookup *l = p;
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(l->host, l->port, &hints, &res);
	pthread_mutex_lock(&lock);
	for (const struct addrinfo *ai = rc == 0 ? res : NULL; ai && l->n < RESOLVE_MAX;
	     ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(l->a[0].ss))
			continue;
		memcpy(&l->a[l->n].ss, ai->ai_addr, ai->ai_addrlen);
		l->a[l->n++].len = ai->ai_addrlen;
	}
	if (!l->n) {
		snprintf(l->err, sizeof(l->err), "cannot resolve %s: %s", l->host,
		         rc ? gai_strerror(rc) : "no address");
	}
	l->done = 1;
	/* Under the lock, so resolve_shutdown() cannot let the context go meanwhile. */
	if (!shutting_down)
		lws_cancel_service(l->ctx);
	pthread_mutex_unlock(&lock);
	if (res)
		freeaddrinfo(res);
	return NULL;
}

int resolve_numeric(const char *host, uint16_t port, struct addr *a)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		a->len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		a->len = sizeof(*in6);
		return 0;
	}
	return -1;
}

/* The lookup in flight for host:port, or NULL; under the lock. */
static struct lookup *lookup_find(const char *host, const char *port)
{
	for (struct lookup *l = pending; l; l = l->next)
		if (!l->done && strcmp(l->host, host) == 0 && strcmp(l->port, port) == 0)
			return l;
	return NULL;
}

struct resolve *resolve_start(struct lws_context *ctx, const char *host, uint16_t port,
                              resolve_fn fn, void *arg)
{
	struct resolve *r = calloc(1, sizeof(*r));
	struct lookup *l, *fresh = calloc(1, sizeof(*fresh));
	pthread_attr_t at;
	pthread_t t;

	if (!r || !fresh) {
		free(r);
		free(fresh);
		return NULL;
	}
	r->fn = fn;
	r->arg = arg;
	snprintf(fresh->host, sizeof(fresh->host), "%s", host);
	snprintf(fresh->port, sizeof(fresh->port), "%u", port);
	pthread_mutex_lock(&lock);
	l = lookup_find(fresh->host, fresh->port);
	if (l) {
		*l->tail = r;
		l->tail = &r->next;
		pthread_mutex_unlock(&lock);
		free(fresh);
		return r;
	}
	l = fresh;
	l->ctx = ctx;
	l->waiters = r;
	l->tail = &r->next;
	l->next = pending;
	pending = l;
	pthread_mutex_unlock(&lock);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	if (pthread_create(&t, &at, resolve_thread, l) != 0) {
		pthread_mutex_lock(&lock);
		l->done = 1;
		snprintf(l->err, sizeof(l->err), "cannot start a resolver thread");
		pthread_mutex_unlock(&lock);
		lws_cancel_service(ctx);
	}
	pthread_attr_destroy(&at);
	return r;
}

void resolve_cancel(struct resolve *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&lock);
	r->canceled = 1;
	pthread_mutex_unlock(&lock);
}

void resolve_dispatch(void)
{
	for (;;) {
		struct lookup *l = NULL, **pp;

		pthread_mutex_lock(&lock);
		for (pp = &pending; *pp; pp = &(*pp)->next)
			if ((*pp)->done) {
				l = *pp;
				*pp = l->next;
				break;
			}
		pthread_mutex_unlock(&lock);
		if (!l)
			return;
		/* A callback may cancel a later waiter, or start a new lookup
		 * for the same name (this one is no longer pending). */
		while (l->waiters) {
			struct resolve *r = l->waiters;
			int canceled;

			l->waiters = r->next;
			pthread_mutex_lock(&lock);
			canceled = r->canceled;
			pthread_mutex_unlock(&lock);
			if (!canceled)
				r->fn(r->arg, l->err[0] ? NULL : l->a, l->err[0] ? 0 : l->n,
				      l->err[0] ? l->err : NULL);
			free(r);
		}
		free(l);
	}
}

void resolve_shutdown(void)
{
	pthread_mutex_lock(&lock);
	shutting_down = 1;
	pthread_mutex_unlock(&lock);
}
