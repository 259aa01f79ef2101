/*
 * common/addr.h - socket addresses in text form.
 */
#ifndef RELAIS_COMMON_ADDR_H
#define RELAIS_COMMON_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_TEXT_MAX 64 /* "[ffff:...:ffff]:65535" fits */

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/**
 * Parse a numeric "IPv4:port" or "[IPv6]:port" (port 1..65535) into *a.
 * Returns 0, or -1 (no name resolution is ever done here).
 */
int addr_parse(const char *text, struct addr *a);

/** Format *a as "1.2.3.4:80" / "[::1]:80" into out (ADDR_TEXT_MAX bytes). */
void addr_format(const struct addr *a, char out[ADDR_TEXT_MAX]);

/**
 * Format only the IP of a sockaddr ("1.2.3.4", "::1") into out.  An
 * IPv4-mapped IPv6 address (a dual-stack listener's client) is shown as IPv4.
 */
void addr_format_ip(const struct sockaddr *sa, char out[ADDR_TEXT_MAX]);

/** Port of *a in host order. */
uint16_t addr_port(const struct addr *a);

/** 1 when a and b are the same IP address and port. */
int addr_equal(const struct addr *a, const struct addr *b);

/**
 * 1 when connected socket fd is connected to itself.  With nothing listening
 * on a port of the ephemeral range, connect() may draw that very port for
 * the socket: a UDP socket then reads back what it sends, and TCP's
 * simultaneous open (RFC 9293 §3.5) connects to itself and echoes.  Its own
 * addresses are compared, not the target's: 0.0.0.0 reaches 127.0.0.1.
 */
int addr_fd_self_connected(int fd);

/** 1 for the wildcard address (0.0.0.0 or ::), whatever the port. */
int addr_is_any(const struct addr *a);

/**
 * An IPv4-mapped IPv6 address (::ffff:1.2.3.4, how a dual-stack socket
 * names an IPv4 peer) becomes the AF_INET address it is, port kept; any
 * other address is left alone.  What relais passes on (PROXY headers, the
 * OPEN frame) then says TCP4 for an IPv4 client.
 */
void addr_unmap(struct addr *a);

/**
 * Split "host:port" / "[v6]:port" into host (no brackets) and port, for
 * targets that may be names.  Returns 0 or -1 (missing or bad port, host too
 * long for hostcap).
 */
int addr_split(const char *text, char *host, size_t hostcap, uint16_t *port);

/* An IP prefix: "192.168.1.0/24", "2001:db8::/32", or one address. */
struct cidr {
	int family;     /* AF_INET or AF_INET6 */
	unsigned bits;  /* prefix length: 0..32 or 0..128 */
	uint8_t ip[16]; /* the first 4 (IPv4) or 16 bytes; bits past the prefix are 0 */
};

/**
 * Parse "IP" or "IP/BITS" (numeric, no brackets) into *c.  Returns 0, or -1
 * (malformed, prefix too long, or bits set past the prefix: "10.0.0.1/8"
 * is refused, as it most likely means something other than 10.0.0.0/8).
 */
int cidr_parse(const char *text, struct cidr *c);

/** 1 when a's IP lies in c (an IPv4-mapped IPv6 address counts as IPv4). */
int cidr_match(const struct cidr *c, const struct addr *a);

#endif
