/*
 * edge/ports.h - TCP and UDP stream ports, opened while an agent holds an
 * accepted route for them and closed when no route holds them any more.
 * relais owns these sockets (lws vhost listeners never close).
 */
#ifndef RELAIS_EDGE_PORTS_H
#define RELAIS_EDGE_PORTS_H

#include <stddef.h>

#include "session.h"

#define PORTS_MAX_RANGE 1024 /* ports one route may open */

/**
 * Open every port of route r (kind TCP or UDP, lo..hi) on each
 * listen.streams address, or take another reference on ports already open
 * for the same agent.  On failure nothing stays open and why says which port
 * and why (in use, permission denied).  0 or -1.
 */
int ports_open(const struct eroute *r, char *why, size_t cap);

/** Drop route r's reference on its ports; the last one closes them. */
void ports_release(const struct eroute *r);

#endif
