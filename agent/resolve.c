/*
 * agent/resolve.c - name resolution off the event loop (see resolve.h).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

struct resolve {
	struct resolve *next;
	struct lws_context *ctx;
	char host[256];
	char port[8];
	resolve_fn fn;
	void *arg;
	int canceled;
	int done;
	struct addr a[RESOLVE_MAX];
	size_t n;
	char err[400];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct resolve *pending; /* all started lookups, done or not */
static int shutting_down;       /* the loop is gone: never wake it */

static void *resolve_thread(void *p)
{
	struct resolve *r = p;
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(r->host, r->port, &hints, &res);
	pthread_mutex_lock(&lock);
	for (const struct addrinfo *ai = rc == 0 ? res : NULL; ai && r->n < RESOLVE_MAX;
	     ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(r->a[0].ss))
			continue;
		memcpy(&r->a[r->n].ss, ai->ai_addr, ai->ai_addrlen);
		r->a[r->n++].len = ai->ai_addrlen;
	}
	if (!r->n) {
		snprintf(r->err, sizeof(r->err), "cannot resolve %s: %s", r->host,
		         rc ? gai_strerror(rc) : "no address");
	}
	r->done = 1;
	/* Under the lock, so resolve_shutdown() cannot let the context go meanwhile. */
	if (!shutting_down)
		lws_cancel_service(r->ctx);
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

struct resolve *resolve_start(struct lws_context *ctx, const char *host, uint16_t port,
                              resolve_fn fn, void *arg)
{
	struct resolve *r;
	pthread_attr_t at;
	pthread_t t;

	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->ctx = ctx;
	snprintf(r->host, sizeof(r->host), "%s", host);
	snprintf(r->port, sizeof(r->port), "%u", port);
	r->fn = fn;
	r->arg = arg;
	pthread_mutex_lock(&lock);
	r->next = pending;
	pending = r;
	pthread_mutex_unlock(&lock);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	if (pthread_create(&t, &at, resolve_thread, r) != 0) {
		pthread_mutex_lock(&lock);
		r->done = 1;
		snprintf(r->err, sizeof(r->err), "cannot start a resolver thread");
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
		struct resolve *r = NULL, **pp;

		pthread_mutex_lock(&lock);
		for (pp = &pending; *pp; pp = &(*pp)->next)
			if ((*pp)->done) {
				r = *pp;
				*pp = r->next;
				break;
			}
		pthread_mutex_unlock(&lock);
		if (!r)
			return;
		if (!r->canceled)
			r->fn(r->arg, r->err[0] ? NULL : r->a, r->err[0] ? 0 : r->n,
			      r->err[0] ? r->err : NULL);
		free(r);
	}
}

void resolve_shutdown(void)
{
	pthread_mutex_lock(&lock);
	shutting_down = 1;
	pthread_mutex_unlock(&lock);
}
