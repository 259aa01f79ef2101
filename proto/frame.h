/*
 * proto/frame.h - the relais tunnel wire format (see proto/PROTOCOL.md).
 *
 * Pure codec: no I/O, no allocation, no libwebsockets.  Every WebSocket
 * message on the tunnel carries one or more frames back to back.  A frame is
 * a 10-byte header (type u8, flags u8, stream u32, length u32, big endian)
 * followed by `length` payload bytes.
 */
#ifndef RELAIS_PROTO_FRAME_H
#define RELAIS_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_VERSION       1
#define FRAME_HEADER_LEN    10
#define FRAME_MAX_DATA      65536u /* DATA / DATAGRAM payload limit */
#define FRAME_MAX_PAYLOAD   (FRAME_MAX_DATA)
#define FRAME_MAX_MESSAGE   (1u << 20) /* one WebSocket message, all frames */
#define FRAME_MAX_WINDOW    (1u << 30) /* largest credit / increment */
#define PROTO_CHALLENGE_LEN 32
#define PROTO_PUBKEY_LEN    32
#define PROTO_SIG_LEN       64
#define PROTO_MAX_HOST      253 /* RFC 1035 name, text form */
#define PROTO_MAX_REASON    255
#define PROTO_MAX_NAME      63

enum frame_type {
	FRAME_HELLO = 1,        /* edge -> agent: version, challenge */
	FRAME_AUTH = 2,         /* agent -> edge: version, pubkey, signature, name */
	FRAME_WELCOME = 3,      /* edge -> agent: session parameters */
	FRAME_REJECT = 4,       /* edge -> agent: code, reason; then close */
	FRAME_ROUTE = 5,        /* agent -> edge: stream = route id */
	FRAME_ROUTE_ANSWER = 6, /* edge -> agent: stream = route id */
	FRAME_OPEN = 7,         /* edge -> agent: new stream on a route */
	FRAME_ACCEPT = 8,       /* agent -> edge: local service connected */
	FRAME_REFUSE = 9,       /* agent -> edge: code, reason */
	FRAME_DATA = 10,        /* stream bytes */
	FRAME_WINDOW = 11,      /* credit increment for the sender */
	FRAME_FIN = 12,         /* sender will send no more DATA (half-close) */
	FRAME_RST = 13,         /* abort the stream both ways, code */
	FRAME_DATAGRAM = 14,    /* one UDP datagram on a flow (stream id) */
	FRAME_PING = 15,        /* opaque u64, answered by PONG */
	FRAME_PONG = 16,
	FRAME_GOAWAY = 17, /* no new streams; code, reason */
	FRAME_TYPE_MAX = 17
};

/* Route / stream kinds (FRAME_ROUTE.kind, FRAME_OPEN.kind). */
enum route_kind {
	ROUTE_KIND_HTTP = 1, /* HTTP proxy host (edge parses HTTP) */
	ROUTE_KIND_TLS = 2,  /* TLS passthrough by SNI */
	ROUTE_KIND_TCP = 3,  /* raw TCP port (range) */
	ROUTE_KIND_UDP = 4,  /* UDP port (range) */
	ROUTE_KIND_MAX = 4
};

/* FRAME_ROUTE_ANSWER.status */
enum route_status { ROUTE_ACCEPTED = 0, ROUTE_REFUSED = 1 };

/* FRAME_OPEN.flags bits (header flags field). */
#define OPEN_FLAG_TLS 0x01 /* client reached the edge over TLS (https) */

/* RST / REFUSE / REJECT / GOAWAY codes. */
enum proto_code {
	CODE_OK = 0,
	CODE_PROTOCOL = 1,    /* peer violated the protocol */
	CODE_REFUSED = 2,     /* local service refused the connection */
	CODE_UNREACHABLE = 3, /* local service unreachable / DNS failure */
	CODE_TIMEOUT = 4,     /* local service did not answer in time */
	CODE_NO_ROUTE = 5,    /* route id unknown to the agent */
	CODE_FLOW = 6,        /* flow-control window exceeded */
	CODE_CANCEL = 7,      /* client went away */
	CODE_INTERNAL = 8,
	CODE_AUTH = 9,      /* authentication failed */
	CODE_SHUTDOWN = 10, /* process is exiting / restarting */
	CODE_BUSY = 11      /* the agent holds as many connections as it allows */
};

struct frame_hello {
	uint16_t version;
	uint8_t challenge[PROTO_CHALLENGE_LEN];
};

struct frame_auth {
	uint16_t version;
	uint8_t pubkey[PROTO_PUBKEY_LEN];
	uint8_t sig[PROTO_SIG_LEN];
	char name[PROTO_MAX_NAME + 1]; /* agent's self-chosen label, may be "" */
};

struct frame_welcome {
	uint32_t window;               /* initial per-stream credit both ways */
	uint32_t ping_ms;              /* the edge expects traffic at least this often */
	char name[PROTO_MAX_NAME + 1]; /* the agent's name in edge.yaml */
};

/* FRAME_ROUTE.flags bits (header flags field). */
#define ROUTE_FLAG_NO_REDIRECT 0x01 /* HTTP: never redirect http:// to https:// */

struct frame_route {
	uint8_t kind;                  /* enum route_kind */
	uint16_t port_lo;              /* TCP/UDP: first port; HTTP/TLS: 0 */
	uint16_t port_hi;              /* TCP/UDP: last port (== port_lo for one) */
	uint32_t hsts;                 /* HTTP: Strict-Transport-Security max-age, 0 = none */
	char host[PROTO_MAX_HOST + 1]; /* HTTP/TLS: host name; else "" */
};

struct frame_open {
	uint32_t route;       /* route id the agent declared */
	uint8_t kind;         /* enum route_kind */
	uint8_t family;       /* 0 unknown, 4 or 6 */
	uint8_t addr[16];     /* client address (IPv4 in the first 4 bytes) */
	uint16_t port;        /* client port */
	uint16_t dst_port;    /* edge port the client connected to */
	uint8_t dst_family;   /* 0, 4 or 6 */
	uint8_t dst_addr[16]; /* edge address the client connected to */
};

/* REJECT, ROUTE_ANSWER (code = status), REFUSE, RST (no reason), GOAWAY */
struct frame_code {
	uint32_t code;
	char reason[PROTO_MAX_REASON + 1];
};

/* One decoded frame.  `payload` points into the caller's buffer. */
struct frame {
	uint8_t type;
	uint8_t flags;
	uint32_t stream;
	uint32_t len;
	const uint8_t *payload;
	union {
		struct frame_hello hello;
		struct frame_auth auth;
		struct frame_welcome welcome;
		struct frame_route route;
		struct frame_open open;
		struct frame_code code; /* REJECT ROUTE_ANSWER REFUSE RST GOAWAY */
		uint32_t window;        /* WINDOW increment, 1..FRAME_MAX_WINDOW */
		uint64_t ping;          /* PING / PONG opaque */
	} u;
};

#define FRAME_INCOMPLETE 0
#define FRAME_ERROR      (-1)

/**
 * Decode the frame at the start of buf[0..len).  Returns the number of bytes
 * it occupies (> 0) and fills *f, FRAME_INCOMPLETE if more bytes are needed,
 * or FRAME_ERROR with *err set to a static reason (unknown type, oversize
 * length, bad version, malformed payload, stream id 0 where one is needed).
 */
ssize_t frame_decode(const uint8_t *buf, size_t len, struct frame *f, const char **err);

/**
 * Encode *f into out[0..cap).  For DATA and DATAGRAM the payload is f->payload
 * with f->len bytes; other types take their fields from f->u.  Returns bytes
 * written, or 0 if cap is too small or a field is out of range.
 */
size_t frame_encode(uint8_t *out, size_t cap, const struct frame *f);

/**
 * Check *f against every rule frame_decode() and frame_encode() enforce
 * (type, flags, stream id, versions, strings, ranges).  Returns 0, or -1
 * with *err (may be NULL) set to a static reason.
 */
int frame_check(const struct frame *f, const char **err);

/** The payload length a FRAME_HEADER_LEN-byte header announces (unchecked:
 * frame_decode() judges it). */
uint32_t frame_get_len(const uint8_t *hdr);

/**
 * Write only a 10-byte frame header (for DATA payloads produced in place
 * right after it).  out must hold FRAME_HEADER_LEN bytes.
 */
void frame_put_header(uint8_t *out, uint8_t type, uint8_t flags, uint32_t stream, uint32_t len);

/** Name of a frame type for logs ("DATA"), "?" when unknown. */
const char *frame_type_name(uint8_t type);

/**
 * Build the byte string the agent signs and the edge verifies:
 * "relais-auth-v1" NUL, version (u16), challenge, pubkey, name length (u8),
 * name.  out must hold PROTO_AUTH_MSG_MAX bytes; returns its length.
 */
#define PROTO_AUTH_MSG_MAX (15 + 2 + PROTO_CHALLENGE_LEN + PROTO_PUBKEY_LEN + 1 + PROTO_MAX_NAME)
size_t proto_auth_message(uint8_t *out, uint16_t version, const uint8_t *challenge,
                          const uint8_t *pubkey, const char *name);

#endif
