/*
 * edge/ports.c - TCP and UDP stream ports (see ports.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/conn.h"
#include "../common/log.h"
#include "accesslog.h"
#include "edge.h"
#include "listener.h"
#include "pipe.h"
#include "policy.h"
#include "ports.h"
#include "registry.h"
#include "udp.h"

#define PORTS_ADDRS 4

struct sport {
	uint8_t kind;
	uint16_t port;
	int refs;
	struct listener *tcp[PORTS_ADDRS];
	struct udpsock *udp[PORTS_ADDRS];
	struct sport *next;
};

static struct sport *ports;

static struct sport *ports_find(uint8_t kind, uint16_t port)
{
	for (struct sport *p = ports; p; p = p->next)
		if (p->kind == kind && p->port == port)
			return p;
	return NULL;
}

/* A TCP client on a stream port: pipe it to an agent holding the port. */
static void ports_tcp_accept(struct listener *l, int fd, const struct addr *peer,
                             const struct addr *local)
{
	const struct eroute *r = NULL;
	struct sport *sp = l->arg;
	struct esession *s = registry_lookup_port(ROUTE_KIND_TCP, sp->port, &r);
	struct conn *conn;
	const char *err;
	char what[16];

	if (!s || edge.draining) {
		close(fd);
		return;
	}
	snprintf(what, sizeof(what), "tcp/%u", sp->port);
	if (!policy_allows(policy_access_port(&edge.cfg, ROUTE_KIND_TCP, sp->port), peer)) {
		char ip[ADDR_TEXT_MAX];

		addr_format_ip((const struct sockaddr *)&peer->ss, ip);
		log_debug("%s: client %s denied by its access list", what, ip);
		accesslog_write(ip, what, "TCP", "-", 403, 0, 0, 0);
		close(fd);
		return;
	}
	conn = conn_adopt(edge.raw_vh, fd, 1, &conn_nop_ops, NULL, &err);
	if (!conn) {
		log_warn("tcp/%u: cannot adopt a connection: %s", sp->port, err);
		return;
	}
	if (pipe_start(conn, s, r, 0, what) < 0)
		log_warn("tcp/%u: cannot open a stream to agent '%s'", sp->port, s->agent);
}

static void ports_close_one(struct sport *sp)
{
	for (int i = 0; i < PORTS_ADDRS; i++) {
		listener_close(sp->tcp[i]);
		udp_close(sp->udp[i]);
	}
	free(sp);
}

static struct sport *ports_bind(uint8_t kind, uint16_t port, char *why, size_t cap)
{
	struct sport *sp = calloc(1, sizeof(*sp));
	char name[32];

	if (!sp) {
		snprintf(why, cap, "out of memory");
		return NULL;
	}
	sp->kind = kind;
	sp->port = port;
	snprintf(name, sizeof(name), "%s/%u", kind == ROUTE_KIND_UDP ? "udp" : "tcp", port);
	for (size_t i = 0; i < edge.cfg.nstreams && i < PORTS_ADDRS; i++) {
		struct addr a = edge.cfg.streams[i];
		const char *err = NULL;

		if (a.ss.ss_family == AF_INET)
			((struct sockaddr_in *)&a.ss)->sin_port = htons(port);
		else
			((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(port);
		if (kind == ROUTE_KIND_TCP)
			sp->tcp[i] = listener_open(&a, name, 0, ports_tcp_accept, sp, &err);
		else
			sp->udp[i] = udp_open(&a, port, &err);
		if (err) {
			char at[ADDR_TEXT_MAX];

			addr_format(&a, at);
			snprintf(why, cap, "cannot open %s on %s: %s", name, at, err);
			ports_close_one(sp);
			return NULL;
		}
	}
	return sp;
}

int ports_open(const struct eroute *r, char *why, size_t cap)
{
	if ((unsigned)r->port_hi - r->port_lo >= PORTS_MAX_RANGE) {
		snprintf(why, cap, "port range larger than %d ports", PORTS_MAX_RANGE);
		return -1;
	}
	for (unsigned p = r->port_lo; p <= r->port_hi; p++) {
		struct sport *sp = ports_find(r->kind, (uint16_t)p);

		if (sp) {
			sp->refs++; /* another connection of the same agent (HA) */
			continue;
		}
		sp = ports_bind(r->kind, (uint16_t)p, why, cap);
		if (!sp) {
			/* Undo this route's references so far. */
			struct eroute part = *r;

			part.port_hi = (uint16_t)(p - 1);
			if (p > r->port_lo)
				ports_release(&part);
			return -1;
		}
		sp->refs = 1;
		sp->next = ports;
		ports = sp;
	}
	return 0;
}

void ports_release(const struct eroute *r)
{
	for (unsigned p = r->port_lo; p <= r->port_hi; p++) {
		struct sport **pp;

		for (pp = &ports; *pp; pp = &(*pp)->next) {
			struct sport *sp = *pp;

			if (sp->kind != r->kind || sp->port != p)
				continue;
			if (--sp->refs == 0) {
				*pp = sp->next;
				log_info("%s/%u closed", r->kind == ROUTE_KIND_UDP ? "udp" : "tcp",
				         p);
				ports_close_one(sp);
			}
			break;
		}
	}
}
