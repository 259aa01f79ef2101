/*
 * common/dgbatch.h - datagrams gathered for sendmmsg().
 *
 * A UDP relay that sends each datagram with its own system call pays that
 * call per datagram, and each send wakes the receiver, which may take the
 * CPU from the sender there and then: once per datagram.  Datagrams that
 * arrive together (from one read of the tunnel) are gathered here instead,
 * each copied with its owner (a flow, a socket) and its socket, and leave
 * with one sendmmsg() per owner when dgb_send() runs: when the batch is
 * full, and when the caller's loop comes round.  Each owner's datagrams
 * keep their order.
 *
 * When sendmmsg() has sent some and then meets an error, Linux returns the
 * count and the error is lost: an ICMP error pending on a connected socket
 * (the far end refused the datagram before) is taken that way, and the
 * datagram that met it was not sent.  So once a call stops short, the
 * owner's rest go one call each: the datagram goes, and the next error
 * (the far end refuses that one too) reaches failed().
 */
#ifndef RELAIS_COMMON_DGBATCH_H
#define RELAIS_COMMON_DGBATCH_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define DGB_MAX      64             /* datagrams in a batch */
#define DGB_BYTES    (256u * 1024u) /* and their bytes */
#define DGB_HDR_MAX  128            /* a header sent before a datagram */
#define DGB_CMSG_MAX 64             /* a control message: IP_PKTINFO or IPV6_PKTINFO */

/* CMSG_SPACE() is no constant expression to clang: its bound, by hand. */
_Static_assert(_Alignof(struct cmsghdr) <= _Alignof(size_t), "cmsghdr alignment");
_Static_assert(sizeof(struct in6_pktinfo) + 2 * sizeof(struct cmsghdr) <= DGB_CMSG_MAX,
               "room for IPV6_PKTINFO");

struct dgb_entry {
	void *owner;
	int fd;
	struct msghdr m;              /* as given to sendmmsg() */
	struct iovec iov[2];          /* the header (empty unless set), the datagram */
	struct sockaddr_storage name; /* for the caller: where to */
	union {
		char buf[DGB_CMSG_MAX];
		size_t align; /* a cmsghdr's (its flexible array makes it no member here) */
	} cm;                 /* for the caller: a source address */
	uint8_t hdr[DGB_HDR_MAX];
};

struct dgb_ops {
	/** A datagram of owner could not go (errno err): 1 to lose it alone
	 * and try owner's next ones, 0 to give up it and the rest (unsent()
	 * is called for each, in order, this one first). */
	int (*failed)(void *owner, int err);
	/** A datagram given up after failed() said 0. */
	void (*unsent)(void *owner, const uint8_t *p, size_t n);
};

struct dgb {
	const struct dgb_ops *ops;
	unsigned n;
	size_t used;
	struct dgb_entry e[DGB_MAX];
	uint8_t data[DGB_BYTES];
};

/**
 * A copy of the n bytes at p, to go on fd for owner: its entry, whose
 * m sends iov[1] (the copy) alone, to fd's connected peer; the caller may
 * set a header in iov[0] (then m.msg_iov = iov, m.msg_iovlen = 2), a
 * name, a control message.  NULL when the batch is full: dgb_send() first.
 * n must be at most DGB_BYTES.
 */
struct dgb_entry *dgb_add(struct dgb *b, void *owner, int fd, const void *p, size_t n);

/** Send every datagram held (owner by owner, each in order).  b is empty
 * from the start: a callback may call dgb_send() (nothing to send then),
 * never dgb_add() (the entries are still being sent). */
void dgb_send(struct dgb *b);

/** Take owner's datagrams out (its socket is gone): each is handed to
 * keep (unless NULL), in order; how many. */
unsigned dgb_drop(struct dgb *b, const void *owner,
                  void (*keep)(void *owner, const uint8_t *p, size_t n));

#endif
