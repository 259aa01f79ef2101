/* tests/unit/common/dgbatch.c - datagrams gathered for sendmmsg(), sent on
 * real UDP sockets on loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../../common/dgbatch.h"
#include "../unit.h"

static struct dgb b;
static int nfailed, nunsent, last_err, keep_going;
static char seen[16]; /* what unsent() or a dgb_drop() keeper saw: a mark per datagram, in order */

/* A datagram's mark: its first byte, H for a big one. */
static void saw(const uint8_t *p, size_t n)
{
	size_t k = strlen(seen);

	if (k + 1 < sizeof(seen))
		seen[k] = n > 16 ? 'H' : (char)p[0];
}

static int on_failed(void *owner, int err)
{
	nfailed++;
	last_err = err;
	return keep_going;
}

static void on_unsent(void *owner, const uint8_t *p, size_t n)
{
	nunsent++;
	saw(p, n);
}

static void keeper(void *owner, const uint8_t *p, size_t n)
{
	saw(p, n);
}

static const struct dgb_ops ops = {.failed = on_failed, .unsent = on_unsent};

/* A bound receiver (rx) and a sender connected to it (tx). */
static void pair(int *rx, int *tx)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int sz = 1 << 20;

	*rx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	*tx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	setsockopt(*rx, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	CHECK(bind(*rx, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(*rx, (struct sockaddr *)&a, &len) == 0);
	CHECK(connect(*tx, (struct sockaddr *)&a, sizeof(a)) == 0);
}

static void reset(void)
{
	memset(&b, 0, sizeof(b));
	b.ops = &ops;
	nfailed = nunsent = last_err = keep_going = 0;
	memset(seen, 0, sizeof(seen));
}

/* Two owners interleaved: each receiver gets its own, in order, whole; a
 * header set in iov[0] goes before its datagram. */
static void test_owners_interleaved_keep_order(void)
{
	int rx[2], tx[2];
	uint8_t buf[2048];
	char owner[2];

	reset();
	pair(&rx[0], &tx[0]);
	pair(&rx[1], &tx[1]);
	for (int i = 0; i < 40; i++) {
		uint8_t d[1000];
		int o = i % 3 == 0; /* 1, 0, 0, 1, 0, 0, ... */
		struct dgb_entry *e;

		memset(d, i, sizeof(d));
		e = dgb_add(&b, &owner[o], tx[o], d, (size_t)(10 + i * 20));
		CHECK(e != NULL);
		if (e && o == 1) {
			memcpy(e->hdr, "HDR", 3);
			e->iov[0].iov_len = 3;
			e->m.msg_iov = e->iov;
			e->m.msg_iovlen = 2;
		}
	}
	dgb_send(&b);
	CHECK(b.n == 0 && b.used == 0 && nfailed == 0);
	for (int o = 0; o < 2; o++) {
		int got = 0;

		for (int i = 0; i < 40; i++) {
			size_t want = (size_t)(10 + i * 20) + (o ? 3 : 0);
			ssize_t n;

			if ((i % 3 == 0) != o)
				continue;
			n = recv(rx[o], buf, sizeof(buf), 0);
			CHECK(n == (ssize_t)want);
			if (n != (ssize_t)want)
				break;
			CHECK(!o || memcmp(buf, "HDR", 3) == 0);
			CHECK(buf[want - 1] == (uint8_t)i && buf[o ? 3 : 0] == (uint8_t)i);
			got++;
		}
		CHECK(got == (o ? 14 : 26));
		CHECK(recv(rx[o], buf, sizeof(buf), 0) < 0 && errno == EAGAIN);
	}
	for (int o = 0; o < 2; o++) {
		close(rx[o]);
		close(tx[o]);
	}
}

/* Full at DGB_MAX datagrams, or at DGB_BYTES. */
static void test_full(void)
{
	static uint8_t big[DGB_BYTES];
	char owner;

	reset();
	for (int i = 0; i < DGB_MAX; i++)
		CHECK(dgb_add(&b, &owner, -1, "x", 1) != NULL);
	CHECK(dgb_add(&b, &owner, -1, "x", 1) == NULL);
	reset();
	CHECK(dgb_add(&b, &owner, -1, big, DGB_BYTES - 10) != NULL);
	CHECK(dgb_add(&b, &owner, -1, big, 11) == NULL);
	CHECK(dgb_add(&b, &owner, -1, big, 10) != NULL);
	CHECK(b.used == DGB_BYTES && b.n == 2);
}

/* A datagram too big for UDP fails alone when failed() says go on; else
 * it and the owner's rest are given up (unsent(), in order), and other
 * owners still go. */
static void test_failures(void)
{
	static uint8_t huge[70000];
	int rx[2], tx[2];
	uint8_t buf[100];
	char owner[2];

	pair(&rx[0], &tx[0]);
	pair(&rx[1], &tx[1]);
	for (int round = 0; round < 2; round++) {
		int got = 0;

		reset();
		keep_going = round == 0;
		dgb_add(&b, &owner[0], tx[0], "a", 1);
		dgb_add(&b, &owner[0], tx[0], huge, sizeof(huge));
		dgb_add(&b, &owner[1], tx[1], "other", 5);
		dgb_add(&b, &owner[0], tx[0], "b", 1);
		dgb_add(&b, &owner[0], tx[0], "c", 1);
		dgb_send(&b);
		CHECK(nfailed == 1 && last_err == EMSGSIZE);
		CHECK(nunsent == (round == 0 ? 0 : 3));
		CHECK(strcmp(seen, round == 0 ? "" : "Hbc") == 0);
		while (recv(rx[0], buf, sizeof(buf), 0) == 1)
			got++;
		CHECK(got == (round == 0 ? 3 : 1));
		CHECK(recv(rx[1], buf, sizeof(buf), 0) == 5 && memcmp(buf, "other", 5) == 0);
	}
	for (int o = 0; o < 2; o++) {
		close(rx[o]);
		close(tx[o]);
	}
}

/* Dropped: an owner's datagrams never go (its descriptor is gone); a
 * keeper gets them, in order. */
static void test_drop(void)
{
	int rx, tx;
	uint8_t buf[100];
	char owner[2];

	reset();
	pair(&rx, &tx);
	dgb_add(&b, &owner[0], tx, "1gone", 5);
	dgb_add(&b, &owner[1], tx, "kept", 4);
	dgb_add(&b, &owner[0], tx, "2gone", 5);
	CHECK(dgb_drop(&b, &owner[0], keeper) == 2);
	CHECK(strcmp(seen, "12") == 0);
	CHECK(dgb_drop(&b, &owner[0], keeper) == 0);
	CHECK(dgb_drop(&b, NULL, NULL) == 0);
	dgb_send(&b);
	CHECK(recv(rx, buf, sizeof(buf), 0) == 4 && memcmp(buf, "kept", 4) == 0);
	CHECK(recv(rx, buf, sizeof(buf), 0) < 0 && errno == EAGAIN);
	close(rx);
	close(tx);
}

int main(void)
{
	RUN(test_owners_interleaved_keep_order);
	RUN(test_full);
	RUN(test_failures);
	RUN(test_drop);
	UNIT_END();
}
