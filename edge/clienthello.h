/*
 * edge/clienthello.h - TLS ClientHello parser (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
 *
 * Pure codec: no I/O, no allocation, no OpenSSL.  The edge peeks at the first
 * bytes of a connection on its TLS port (recv with MSG_PEEK) before any TLS
 * state exists, and routes by the server name found here: to the tunnel, to
 * an SNI passthrough route, or to its own TLS termination.  The bytes stay in
 * the socket for whichever TLS implementation handles the connection next.
 */
#ifndef RELAIS_EDGE_CLIENTHELLO_H
#define RELAIS_EDGE_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

#define CH_MAX_BYTES  16384 /* give up (error) if no complete ClientHello within this many bytes */
#define CH_INCOMPLETE 0
#define CH_ERROR      (-1)

struct clienthello {
	char sni[256];       /* "" when absent; lower-cased, validated host name, no final dot */
	int has_alpn_h2;     /* ALPN offers "h2" */
	int has_alpn_http11; /* ALPN offers "http/1.1" */
	int has_alpn;        /* an ALPN extension is present */
	uint16_t legacy_version; /* ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3) */
	uint16_t record_version; /* version field of the first record (0x0301 usually) */
};

/**
 * Parse the ClientHello at the start of buf[0..len), possibly split over
 * several handshake records (reassembled up to CH_MAX_BYTES of records).
 * Returns the bytes of the records holding the whole ClientHello (> 0, at
 * most CH_MAX_BYTES) with *ch filled; CH_INCOMPLETE when more bytes are needed
 * (only while len < CH_MAX_BYTES); or CH_ERROR with *err (static text): "not
 * TLS" when the first bytes are not a TLS handshake record (plain HTTP, an
 * SSLv2 hello, garbage), "not a ClientHello", "malformed ClientHello"
 * (including duplicate extensions), "ClientHello too large", "bad server name".
 * Record-layer errors are reported as soon as the bytes seen prove them,
 * errors inside the message once it is complete.  *ch is zeroed on error.
 */
int clienthello_parse(const uint8_t *buf, size_t len, struct clienthello *ch, const char **err);

#endif
