/*
 * edge/listener.c - listening sockets adopted as raw file descriptors.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "clients.h"
#include "edge.h"
#include "listener.h"

#define LISTENER_BACKOFF_MS 100 /* pause after running out of descriptors */

struct listener *listener_open(const struct addr *addr, const char *name, int flags,
                               listener_accept_fn on_accept, void *arg, const char **err)
{
	struct listener *l;
	lws_sock_file_fd_type u;
	int one = 1;
	int fd;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = strerror(errno);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ss.ss_family == AF_INET6) {
		int v6only = !((flags & LISTENER_DUAL_STACK) && addr_is_any(addr));

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 511) < 0) {
		*err = strerror(errno);
		close(fd);
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		*err = "out of memory";
		close(fd);
		return NULL;
	}
	l->fd = fd;
	l->addr = *addr;
	l->on_accept = on_accept;
	l->arg = arg;
	snprintf(l->name, sizeof(l->name), "%s", name);
	u.filefd = fd;
	l->wsi = lws_adopt_descriptor_vhost(edge.raw_vh, LWS_ADOPT_RAW_FILE_DESC, u,
	                                    EDGE_PROTO_LISTENER, NULL);
	if (!l->wsi) {
		*err = "cannot add the socket to the event loop";
		close(fd);
		free(l);
		return NULL;
	}
	lws_set_opaque_user_data(l->wsi, l);
	return l;
}

void listener_close(struct listener *l)
{
	if (!l)
		return;
	lws_sul_cancel(&l->sul);
	if (l->wsi) {
		/* Closing the adopted wsi closes the fd too (LWS-NOTES). */
		lws_set_opaque_user_data(l->wsi, NULL);
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
	} else {
		close(l->fd);
	}
	free(l);
}

static void listener_resume(lws_sorted_usec_list_t *sul)
{
	struct listener *l = lws_container_of(sul, struct listener, sul);

	l->backoff = 0;
	if (l->wsi)
		lws_rx_flow_control(l->wsi, 1);
}

/*
 * Out of descriptors or memory, or at the public clients' share of them: the
 * connection stays in the backlog and the socket stays readable, so polling
 * on would spin.  Stop accepting for a while instead (the backlog holds the
 * clients; the kernel drops what does not fit), and warn once a second at
 * most.
 */
static void listener_pause(struct listener *l, const char *why)
{
	uint64_t now = (uint64_t)lws_now_usecs();

	l->failures++;
	if (now - l->warned_us >= LWS_US_PER_SEC) {
		log_warn("%s listener: %s (%llu times); not accepting for %d ms", l->name, why,
		         (unsigned long long)l->failures, LISTENER_BACKOFF_MS);
		l->warned_us = now;
		l->failures = 0;
	}
	if (l->wsi && !l->backoff) {
		l->backoff = 1;
		lws_rx_flow_control(l->wsi, 0);
		lws_sul_schedule(edge.ctx, 0, &l->sul, listener_resume,
		                 (lws_usec_t)LISTENER_BACKOFF_MS * LWS_US_PER_MS);
	}
}

/*
 * fd's address holds listen.max_connections_per_client already: reset it
 * (no FIN handshake to wait on, no TIME_WAIT here) and say so, at most once
 * a second whatever the port: one address at its limit may knock on every
 * port of an agent's ranges (1024 a route, on each listen.streams address),
 * and must not write a line for each.
 */
static void listener_refuse(struct listener *l, int fd, struct addr *peer)
{
	static struct log_rate refused;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	char ip[ADDR_TEXT_MAX], more[LOG_RATE_MORE];

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	if (!log_rate_ok(&refused, (uint64_t)lws_now_usecs(), more))
		return;
	addr_unmap(peer);
	addr_format_ip((const struct sockaddr *)&peer->ss, ip);
	log_warn("%s listener: %s: %u connections from this %s already "
	         "(listen.max_connections_per_client); refused%s",
	         l->name, ip, edge.cfg.max_conns_per_client,
	         peer->ss.ss_family == AF_INET6 ? "/64" : "address", more);
}

static void listener_accept(struct listener *l)
{
	/* Bounded batch per wakeup so one busy port cannot starve the loop. */
	for (int i = 0; i < 64; i++) {
		struct addr peer, local;
		int fd, one = 1;

		peer.len = sizeof(peer.ss);
		fd = accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len,
		             SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				char why[96];

				snprintf(why, sizeof(why), "accept: %s", strerror(errno));
				listener_pause(l, why);
			} else if (errno == ECONNABORTED || errno == EINTR)
				continue;
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("%s listener: accept: %s", l->name, strerror(errno));
			return;
		}
		if (fd >= edge.fd_cap && !l->reserve_ok) {
			char why[128];

			close(fd);
			snprintf(why, sizeof(why),
			         "client refused: %ld descriptors in use, the rest "
			         "kept for agents",
			         edge.fd_cap);
			listener_pause(l, why);
			return;
		}
		if (!l->unlimited &&
		    !clients_admit(fd, &peer, edge.cfg.max_conns_per_client, l->pool)) {
			listener_refuse(l, fd, &peer);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		local.len = sizeof(local.ss);
		if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) < 0)
			local = l->addr;
		addr_unmap(&peer);
		addr_unmap(&local);
		l->on_accept(l, fd, &peer, &local);
	}
}

int listener_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
	struct listener *l = lws_get_opaque_user_data(wsi);

	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (l)
			listener_accept(l);
		break;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (l)
			l->wsi = NULL;
		break;
	default:
		break;
	}
	return 0;
}
