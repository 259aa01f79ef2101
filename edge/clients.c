/*
 * edge/clients.c - connections per client address (see clients.h).
 *
 * Connections end in many places (lws closes the HTTP and HTTPS ones, the
 * stream pipes close theirs, a handler may refuse at once), so counting is
 * not tied to any of them: each counted connection is remembered by its
 * descriptor number and the inode of its socket.  A number accept returns
 * again was closed in between; an address at its limit has its descriptors
 * checked with fstat before it is refused.  Nothing here needs to hear
 * about a close, and a close no path reports cannot leak a count.
 */
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clients.h"

#define CLIENTS_HASH    4096
#define CLIENTS_RECHECK (250 * 1000000ull) /* ns between checks of one address */

struct centry {
	uint8_t key[CLIENT_KEY_LEN];
	unsigned n;        /* connections counted */
	int head;          /* their descriptors, linked through slots[] */
	uint64_t check_ns; /* last fstat check */
	struct centry *next;
};

struct slot {
	struct centry *e; /* NULL: this descriptor is not a counted connection */
	int next, prev;
	ino_t ino;
};

static struct slot *slots;
static size_t nslots;
static struct centry *table[CLIENTS_HASH];
static uint8_t hkey[crypto_shorthash_KEYBYTES];
static int hkey_set;

void client_key(const struct addr *a, uint8_t key[CLIENT_KEY_LEN])
{
	struct addr u = *a;

	addr_unmap(&u);
	memset(key, 0, CLIENT_KEY_LEN);
	if (u.ss.ss_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)&u.ss)->sin_addr, 4);
	} else {
		key[0] = 6;
		memcpy(key + 1, ((const struct sockaddr_in6 *)&u.ss)->sin6_addr.s6_addr, 8);
	}
}

uint64_t client_hash(const void *p, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	if (!hkey_set) {
		randombytes_buf(hkey, sizeof(hkey));
		hkey_set = 1;
	}
	crypto_shorthash(out, p, len, hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

static struct centry **clients_find(const uint8_t key[CLIENT_KEY_LEN])
{
	struct centry **pp = &table[client_hash(key, CLIENT_KEY_LEN) % CLIENTS_HASH];

	while (*pp && memcmp((*pp)->key, key, CLIENT_KEY_LEN) != 0)
		pp = &(*pp)->next;
	return pp;
}

/* Count fd, the socket ino, as a connection of e. */
static void clients_link(int fd, struct centry *e, ino_t ino)
{
	slots[fd] = (struct slot){.e = e, .next = e->head, .prev = -1, .ino = ino};
	if (e->head >= 0)
		slots[e->head].prev = fd;
	e->head = fd;
	e->n++;
}

/* fd no longer counts (closed): off its address's list, which goes when empty. */
static void clients_drop(int fd)
{
	struct slot *s = &slots[fd];
	struct centry *e = s->e;

	if (s->prev >= 0)
		slots[s->prev].next = s->next;
	else
		e->head = s->next;
	if (s->next >= 0)
		slots[s->next].prev = s->prev;
	s->e = NULL;
	if (--e->n == 0) {
		struct centry **pp = clients_find(e->key);

		*pp = e->next;
		free(e);
	}
}

/* Drop e's descriptors that are no longer the sockets counted. */
static void clients_recheck(struct centry *e)
{
	int fd = e->head;

	while (fd >= 0) {
		int next = slots[fd].next;
		struct stat st;

		if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_ino != slots[fd].ino)
			clients_drop(fd); /* may free e: the loop reads only slots[] */
		fd = next;
	}
}

static uint64_t clients_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Room for descriptor fd in slots[]; 0, or -1 out of memory. */
static int clients_grow(int fd)
{
	size_t n = nslots ? nslots : 1024;
	struct slot *p;

	while (n <= (size_t)fd)
		n *= 2;
	if (n == nslots)
		return 0;
	p = realloc(slots, n * sizeof(*p));
	if (!p)
		return -1;
	memset(p + nslots, 0, (n - nslots) * sizeof(*p));
	slots = p;
	nslots = n;
	return 0;
}

/* The key of peer in pool: the tunnel port's connections are another
 * table's, in effect (the family byte says which). */
static void clients_key(const struct addr *peer, enum clients_pool pool,
                        uint8_t key[CLIENT_KEY_LEN])
{
	client_key(peer, key);
	if (pool == CLIENTS_TUNNEL)
		key[0] |= 0x80;
}

int clients_admit(int fd, const struct addr *peer, unsigned max, enum clients_pool pool)
{
	uint8_t key[CLIENT_KEY_LEN];
	struct centry **pp, *e;
	struct stat st;

	if (fd < 0 || clients_grow(fd) < 0 || fstat(fd, &st) < 0)
		return max == 0; /* cannot count it: refuse only under a limit */
	if (slots[fd].e)
		clients_drop(fd); /* the number was closed and handed out again */
	clients_key(peer, pool, key);
	pp = clients_find(key);
	e = *pp;
	if (e && max && e->n >= max) {
		uint64_t now = clients_now_ns();

		if (now - e->check_ns < CLIENTS_RECHECK)
			return 0;
		e->check_ns = now;
		clients_recheck(e);
		pp = clients_find(key);
		e = *pp;
		if (e && e->n >= max)
			return 0;
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return max == 0;
		memcpy(e->key, key, sizeof(key));
		e->head = -1;
		*pp = e;
	}
	clients_link(fd, e, st.st_ino);
	return 1;
}

void clients_move(int from, int to)
{
	struct stat st;

	if (from < 0 || to < 0 || from == to || (size_t)from >= nslots || !slots[from].e)
		return;
	/* Only the same socket moves; with no room for to, from keeps counting
	 * until its number is handed out again. */
	if (fstat(to, &st) < 0 || st.st_ino != slots[from].ino || clients_grow(to) < 0)
		return;
	if (slots[to].e)
		clients_drop(to); /* to's number was closed since it was counted */
	/* Linked under to before from goes, so the entry never empties. */
	clients_link(to, slots[from].e, slots[from].ino);
	clients_drop(from);
}

unsigned clients_count(const struct addr *peer, enum clients_pool pool)
{
	uint8_t key[CLIENT_KEY_LEN];
	struct centry *e;

	clients_key(peer, pool, key);
	e = *clients_find(key);
	if (!e)
		return 0;
	clients_recheck(e);
	e = *clients_find(key);
	return e ? e->n : 0;
}

void clients_free(void)
{
	for (size_t i = 0; i < CLIENTS_HASH; i++)
		while (table[i]) {
			struct centry *e = table[i];

			table[i] = e->next;
			free(e);
		}
	free(slots);
	slots = NULL;
	nslots = 0;
}
