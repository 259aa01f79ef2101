/*
 * common/addr.c - socket addresses in text form.
 *
 * Only numeric addresses: a listener address never goes through DNS, and
 * targets that may be names are split here and resolved by their user.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Strict decimal port 1..65535: digits only, no sign, no spaces. */
static int addr_parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 5)
			return -1;
		v = v * 10 + (unsigned long)(s[n] - '0');
	}
	if (n == 0 || v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/*
 * Split text into the host part (brackets removed) and the port text.
 * *bracketed tells whether the host was written as "[...]".
 */
static int addr_split_raw(const char *text, char *host, size_t hostcap, const char **port,
                          int *bracketed)
{
	const char *colon;
	size_t hlen;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		hlen = (size_t)(close - text - 1);
		text++;
		colon = close + 1;
		*bracketed = 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return -1;
		hlen = (size_t)(colon - text);
		/* a bare IPv6 address is ambiguous with its port: brackets required */
		if (memchr(text, ':', hlen) != NULL)
			return -1;
		*bracketed = 0;
	}
	if (hlen == 0 || hlen >= hostcap)
		return -1;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	*port = colon + 1;
	return 0;
}

int addr_parse(const char *text, struct addr *a)
{
	char host[INET6_ADDRSTRLEN];
	const char *ptext;
	uint16_t port;
	int bracketed;

	memset(a, 0, sizeof(*a));
	if (addr_split_raw(text, host, sizeof(host), &ptext, &bracketed) < 0 ||
	    addr_parse_port(ptext, &port) < 0)
		return -1;
	if (bracketed) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		a->len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		/* inet_pton takes only the dotted quad, unlike inet_aton ("1.2.3") */
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		a->len = sizeof(*sin);
	}
	return 0;
}

void addr_format_ip(const struct sockaddr *sa, char out[ADDR_TEXT_MAX])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, out, ADDR_TEXT_MAX);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		/* a client of a dual-stack listener is shown as the IPv4 it is */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], out, ADDR_TEXT_MAX);
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, out, ADDR_TEXT_MAX);
	} else {
		snprintf(out, ADDR_TEXT_MAX, "?");
	}
}

void addr_format(const struct addr *a, char out[ADDR_TEXT_MAX])
{
	const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(out, ADDR_TEXT_MAX, "[%s]:%u", ip, (unsigned)addr_port(a));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, ADDR_TEXT_MAX, "%s:%u", ip, (unsigned)addr_port(a));
	} else {
		snprintf(out, ADDR_TEXT_MAX, "?");
	}
}

uint16_t addr_port(const struct addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return 0;
}

int addr_split(const char *text, char *host, size_t hostcap, uint16_t *port)
{
	const char *ptext;
	int bracketed;

	if (addr_split_raw(text, host, hostcap, &ptext, &bracketed) < 0 ||
	    addr_parse_port(ptext, port) < 0)
		return -1;
	if (bracketed) {
		struct in6_addr tmp;

		if (inet_pton(AF_INET6, host, &tmp) != 1)
			return -1;
	}
	return 0;
}

int addr_equal(const struct addr *a, const struct addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family || addr_port(a) != addr_port(b))
		return 0;
	if (a->ss.ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
		              &((const struct sockaddr_in *)&b->ss)->sin_addr, 4) == 0;
	if (a->ss.ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
		              &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) == 0;
	return 0;
}

void addr_unmap(struct addr *a)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
	struct sockaddr_in sin;

	if (a->ss.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = sin6->sin6_port;
	memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
	memset(&a->ss, 0, sizeof(a->ss));
	memcpy(&a->ss, &sin, sizeof(sin));
	a->len = sizeof(sin);
}

int addr_fd_self_connected(int fd)
{
	struct addr self, peer;

	self.len = sizeof(self.ss);
	peer.len = sizeof(peer.ss);
	return getsockname(fd, (struct sockaddr *)&self.ss, &self.len) == 0 &&
	       getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len) == 0 &&
	       addr_equal(&self, &peer);
}

int addr_is_any(const struct addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
	return 0;
}

int cidr_parse(const char *text, struct cidr *c)
{
	char ip[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t iplen = slash ? (size_t)(slash - text) : strlen(text), bytes;
	unsigned long bits;

	memset(c, 0, sizeof(*c));
	if (iplen == 0 || iplen >= sizeof(ip))
		return -1;
	memcpy(ip, text, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, c->ip) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, ip, c->ip) == 1)
		c->family = AF_INET6;
	else
		return -1;
	bytes = c->family == AF_INET ? 4 : 16;
	bits = bytes * 8;
	if (slash) {
		char *end;

		if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
			return -1;
		bits = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > bytes * 8)
			return -1;
	}
	c->bits = (unsigned)bits;
	for (size_t i = 0; i < bytes; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8
		                : bits > 8 * i      ? (unsigned)(bits - 8 * i)
		                                    : 0;
		uint8_t mask = (uint8_t)(0xff00u >> keep);

		if (c->ip[i] & ~mask)
			return -1;
	}
	return 0;
}

int cidr_match(const struct cidr *c, const struct addr *a)
{
	struct addr u = *a;
	const uint8_t *ip;
	unsigned full, rest;

	addr_unmap(&u);
	if (u.ss.ss_family != c->family)
		return 0;
	ip = c->family == AF_INET ? (const uint8_t *)&((const struct sockaddr_in *)&u.ss)->sin_addr
	                          : ((const struct sockaddr_in6 *)&u.ss)->sin6_addr.s6_addr;
	full = c->bits / 8;
	rest = c->bits % 8;
	if (memcmp(ip, c->ip, full) != 0)
		return 0;
	return rest == 0 || ((ip[full] ^ c->ip[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}
