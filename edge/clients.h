/*
 * edge/clients.h - client addresses: the key one client is known by (an IPv4
 * address, or the /64 of an IPv6 one), a keyed hash for tables of them, and
 * the TCP connections each address holds open (listen.max_connections_per_client).
 */
#ifndef RELAIS_EDGE_CLIENTS_H
#define RELAIS_EDGE_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/addr.h"

#define CLIENT_KEY_LEN 9 /* 4 or 6, then the address or the /64 prefix, zero-padded */

/**
 * The key of a's client: its IPv4 address, or the /64 of its IPv6 address
 * (one host gets a whole /64 and picks addresses from it at will, RFC 8981).
 * An IPv4-mapped address counts as the IPv4 address it is.
 */
void client_key(const struct addr *a, uint8_t key[CLIENT_KEY_LEN]);

/**
 * SipHash-2-4 of p under a key drawn once per process: clients choose their
 * addresses, and must not choose which bucket of a table they land in.
 */
uint64_t client_hash(const void *p, size_t len);

/* What a connection is counted among: the public ports, or the tunnel port
 * (public clients sharing an agent's address cannot keep it out). */
enum clients_pool { CLIENTS_PUBLIC, CLIENTS_TUNNEL };

/**
 * Count fd, just accepted from peer, as a connection of peer's address in
 * pool.  Returns 1 (counted), or 0 when that address holds max connections
 * there already (max 0: no limit); the caller then closes fd.  A connection stops counting
 * once its descriptor is closed, whoever closes it: seen when accept hands
 * the number out again, or, for an address at its limit, by checking that
 * each of its descriptors is still the socket it was (at most every 250 ms).
 */
int clients_admit(int fd, const struct addr *peer, unsigned max, enum clients_pool pool);

/**
 * Descriptor to is a dup() of from, a counted connection whose number from
 * is closed next (conn_release_fd hands a socket over so): the connection
 * goes on counting under to.  Nothing when from is not counted or to is
 * not the same socket.
 */
void clients_move(int from, int to);

/** The connections counted for peer's address in pool now (tests, status). */
unsigned clients_count(const struct addr *peer, enum clients_pool pool);

/** Forget everything counted (the process exits, or a unit test). */
void clients_free(void);

#endif
