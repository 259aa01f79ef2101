/*
 * proto/frame.c - encode and decode tunnel frames (proto/PROTOCOL.md).
 *
 * The decoder trusts nothing: the header is checked (type, flags, stream id
 * rule, payload length against the type's limits) before a single payload
 * byte is awaited, so a peer announcing a huge length is refused at once
 * instead of making us buffer it.  Every payload field is then parsed with a
 * bounds-checked cursor and validated by frame_check(), the same function
 * frame_encode() uses, so whatever we encode decodes and vice versa.  The
 * encoding is canonical: decode followed by encode gives the same bytes.
 */
#include <string.h>

#include "proto/frame.h"

/* Payload sizes, see the frame table in PROTOCOL.md. */
#define HELLO_LEN      (2 + PROTO_CHALLENGE_LEN)
#define AUTH_MIN       (2 + PROTO_PUBKEY_LEN + PROTO_SIG_LEN + 1)
#define WELCOME_MIN    (4 + 4 + 1)
#define CODE_FRAME_MIN (4 + 1)
#define ROUTE_MIN      (1 + 2 + 2 + 4 + 1)
#define OPEN_LEN       (4 + 1 + 1 + 16 + 2 + 1 + 16 + 2)
#define U32_LEN        4
#define U64_LEN        8
#define STREAM_ZERO    0 /* the stream id must be 0 */
#define STREAM_NONZERO 1 /* the stream id must not be 0 */

/* The length error strings below spell these sizes out: keep them in step. */
_Static_assert(HELLO_LEN == 34 && OPEN_LEN == 43, "fixed payload sizes");
_Static_assert(AUTH_MIN == 99 && AUTH_MIN + PROTO_MAX_NAME == 162, "AUTH size");
_Static_assert(WELCOME_MIN == 9 && WELCOME_MIN + PROTO_MAX_NAME == 72, "WELCOME size");
_Static_assert(CODE_FRAME_MIN + PROTO_MAX_REASON == 260, "code frame size");
_Static_assert(ROUTE_MIN + PROTO_MAX_HOST == 263, "ROUTE size");
_Static_assert(FRAME_MAX_DATA == 65536, "DATA size");
_Static_assert(PROTO_MAX_NAME < 256 && PROTO_MAX_HOST < 256 && PROTO_MAX_REASON < 256,
               "str8 lengths fit a byte");

static const char AUTH_SIGN_TAG[] = "relais-auth-v1"; /* sizeof includes the NUL */
_Static_assert(sizeof(AUTH_SIGN_TAG) == 15, "PROTO_AUTH_MSG_MAX counts a 15-byte tag");

struct frame_spec {
	const char *name;
	uint32_t min, max; /* payload length range */
	uint8_t stream;    /* STREAM_ZERO / STREAM_NONZERO */
	uint8_t flags;     /* flag bits defined for this type */
	const char *elen;  /* static reason for a length outside [min, max] */
};

static const struct frame_spec frame_specs[FRAME_TYPE_MAX + 1] = {
    [FRAME_HELLO] = {"HELLO", HELLO_LEN, HELLO_LEN, STREAM_ZERO, 0,
                     "HELLO payload length must be 34"},
    [FRAME_AUTH] = {"AUTH", AUTH_MIN, AUTH_MIN + PROTO_MAX_NAME, STREAM_ZERO, 0,
                    "AUTH payload length must be 99..162"},
    [FRAME_WELCOME] = {"WELCOME", WELCOME_MIN, WELCOME_MIN + PROTO_MAX_NAME, STREAM_ZERO, 0,
                       "WELCOME payload length must be 9..72"},
    [FRAME_REJECT] = {"REJECT", CODE_FRAME_MIN, CODE_FRAME_MIN + PROTO_MAX_REASON, STREAM_ZERO, 0,
                      "REJECT payload length must be 5..260"},
    [FRAME_ROUTE] = {"ROUTE", ROUTE_MIN, ROUTE_MIN + PROTO_MAX_HOST, STREAM_NONZERO,
                     ROUTE_FLAG_NO_REDIRECT, "ROUTE payload length must be 10..263"},
    [FRAME_ROUTE_ANSWER] = {"ROUTE_ANSWER", CODE_FRAME_MIN, CODE_FRAME_MIN + PROTO_MAX_REASON,
                            STREAM_NONZERO, 0, "ROUTE_ANSWER payload length must be 5..260"},
    [FRAME_OPEN] = {"OPEN", OPEN_LEN, OPEN_LEN, STREAM_NONZERO, OPEN_FLAG_TLS,
                    "OPEN payload length must be 43"},
    [FRAME_ACCEPT] = {"ACCEPT", 0, 0, STREAM_NONZERO, 0, "ACCEPT payload must be empty"},
    [FRAME_REFUSE] = {"REFUSE", CODE_FRAME_MIN, CODE_FRAME_MIN + PROTO_MAX_REASON, STREAM_NONZERO,
                      0, "REFUSE payload length must be 5..260"},
    [FRAME_DATA] = {"DATA", 0, FRAME_MAX_DATA, STREAM_NONZERO, 0,
                    "DATA payload length exceeds limit 65536"},
    [FRAME_WINDOW] = {"WINDOW", U32_LEN, U32_LEN, STREAM_NONZERO, 0,
                      "WINDOW payload length must be 4"},
    [FRAME_FIN] = {"FIN", 0, 0, STREAM_NONZERO, 0, "FIN payload must be empty"},
    [FRAME_RST] = {"RST", U32_LEN, U32_LEN, STREAM_NONZERO, 0, "RST payload length must be 4"},
    [FRAME_DATAGRAM] = {"DATAGRAM", 0, FRAME_MAX_DATA, STREAM_NONZERO, 0,
                        "DATAGRAM payload length exceeds limit 65536"},
    [FRAME_PING] = {"PING", U64_LEN, U64_LEN, STREAM_ZERO, 0, "PING payload length must be 8"},
    [FRAME_PONG] = {"PONG", U64_LEN, U64_LEN, STREAM_ZERO, 0, "PONG payload length must be 8"},
    [FRAME_GOAWAY] = {"GOAWAY", CODE_FRAME_MIN, CODE_FRAME_MIN + PROTO_MAX_REASON, STREAM_ZERO, 0,
                      "GOAWAY payload length must be 5..260"},
};

static const struct frame_spec *frame_spec(uint8_t type)
{
	if (type == 0 || type > FRAME_TYPE_MAX)
		return NULL;
	return &frame_specs[type];
}

const char *frame_type_name(uint8_t type)
{
	const struct frame_spec *sp = frame_spec(type);

	return sp ? sp->name : "?";
}

/* Big-endian helpers; p always has room, the callers checked it. */
static uint16_t frame_get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t frame_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t *frame_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *frame_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return p + 4;
}

static uint8_t *frame_put64(uint8_t *p, uint64_t v)
{
	p = frame_put32(p, (uint32_t)(v >> 32));
	return frame_put32(p, (uint32_t)v);
}

static uint8_t *frame_putbytes(uint8_t *p, const void *src, size_t n)
{
	memcpy(p, src, n);
	return p + n;
}

/*
 * Length of s when it is a valid wire string: NUL-terminated within max + 1
 * bytes and printable ASCII only (strings reach logs; no terminal escapes).
 * Returns -1 otherwise.  Never reads past s[max].
 */
static int frame_strlen(const char *s, size_t max)
{
	size_t n;

	for (n = 0; n <= max; n++) {
		unsigned char c = (unsigned char)s[n];

		if (c == '\0')
			return (int)n;
		if (c < 0x20 || c > 0x7e)
			return -1;
	}
	return -1;
}

static uint8_t *frame_putstr(uint8_t *p, const char *s, size_t n)
{
	*p++ = (uint8_t)n;
	return frame_putbytes(p, s, n);
}

/* A bounds-checked read cursor over one payload.  Any overrun sets bad. */
struct frame_rd {
	const uint8_t *p;
	size_t n;
	int bad;
};

static const uint8_t *frame_rd_take(struct frame_rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || r->n < n) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	r->n -= n;
	return p;
}

static uint8_t frame_rd8(struct frame_rd *r)
{
	const uint8_t *p = frame_rd_take(r, 1);

	return p ? p[0] : 0;
}

static uint16_t frame_rd16(struct frame_rd *r)
{
	const uint8_t *p = frame_rd_take(r, 2);

	return p ? frame_get16(p) : 0;
}

static uint32_t frame_rd32(struct frame_rd *r)
{
	const uint8_t *p = frame_rd_take(r, 4);

	return p ? frame_get32(p) : 0;
}

static uint64_t frame_rd64(struct frame_rd *r)
{
	uint64_t hi = frame_rd32(r);

	return hi << 32 | frame_rd32(r);
}

static void frame_rdbytes(struct frame_rd *r, void *dst, size_t n)
{
	const uint8_t *p = frame_rd_take(r, n);

	if (p)
		memcpy(dst, p, n);
}

/*
 * Read a u8-length string into dst (max + 1 bytes), NUL-terminated.  The
 * bytes are checked here, on the wire, because an embedded NUL would hide
 * the rest of the string from frame_check().
 */
static int frame_rdstr(struct frame_rd *r, char *dst, size_t max, const char **err)
{
	size_t n = frame_rd8(r), i;
	const uint8_t *p;

	if (r->bad) {
		*err = "frame payload too short";
		return -1;
	}
	if (n > max) {
		*err = "string exceeds its maximum length";
		return -1;
	}
	if ((p = frame_rd_take(r, n)) == NULL) {
		*err = "string length exceeds frame payload";
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] > 0x7e) {
			*err = "string contains a non-printable byte";
			return -1;
		}
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

static int frame_check_str(const char *s, size_t max, const char **err)
{
	if (frame_strlen(s, max) < 0) {
		*err = "string too long or not printable ASCII";
		return -1;
	}
	return 0;
}

static int frame_family_ok(uint8_t family)
{
	return family == 0 || family == 4 || family == 6;
}

static int frame_check_route(const struct frame_route *r, const char **err)
{
	int hostlen = frame_strlen(r->host, PROTO_MAX_HOST);

	if (hostlen < 0) {
		*err = "ROUTE host too long or not printable ASCII";
		return -1;
	}
	switch (r->kind) {
	case ROUTE_KIND_HTTP:
	case ROUTE_KIND_TLS:
		if (hostlen == 0) {
			*err = "HTTP/TLS ROUTE needs a host";
			return -1;
		}
		if (r->port_lo != 0 || r->port_hi != 0) {
			*err = "HTTP/TLS ROUTE ports must be 0";
			return -1;
		}
		return 0;
	case ROUTE_KIND_TCP:
	case ROUTE_KIND_UDP:
		if (hostlen != 0) {
			*err = "TCP/UDP ROUTE must not carry a host";
			return -1;
		}
		if (r->port_lo == 0 || r->port_lo > r->port_hi) {
			*err = "TCP/UDP ROUTE port range invalid";
			return -1;
		}
		return 0;
	default:
		*err = "unknown ROUTE kind";
		return -1;
	}
}

static int frame_check_open(const struct frame_open *o, const char **err)
{
	if (o->route == 0) {
		*err = "OPEN route id must not be 0";
		return -1;
	}
	if (o->kind == 0 || o->kind > ROUTE_KIND_MAX) {
		*err = "unknown OPEN kind";
		return -1;
	}
	if (!frame_family_ok(o->family) || !frame_family_ok(o->dst_family)) {
		*err = "OPEN address family must be 0, 4 or 6";
		return -1;
	}
	return 0;
}

int frame_check(const struct frame *f, const char **err)
{
	const struct frame_spec *sp = frame_spec(f->type);
	const char *dummy;

	if (err == NULL)
		err = &dummy;
	if (sp == NULL) {
		*err = "unknown frame type";
		return -1;
	}
	if (f->flags & ~sp->flags) {
		*err = "frame flags not defined for this type";
		return -1;
	}
	if (sp->stream == STREAM_ZERO && f->stream != 0) {
		*err = "stream id must be 0 for this frame type";
		return -1;
	}
	if (sp->stream == STREAM_NONZERO && f->stream == 0) {
		*err = "stream id 0 not allowed for this frame type";
		return -1;
	}
	switch (f->type) {
	case FRAME_HELLO:
		if (f->u.hello.version != PROTO_VERSION)
			goto badversion;
		return 0;
	case FRAME_AUTH:
		if (f->u.auth.version != PROTO_VERSION)
			goto badversion;
		return frame_check_str(f->u.auth.name, PROTO_MAX_NAME, err);
	case FRAME_WELCOME:
		if (f->u.welcome.window == 0 || f->u.welcome.window > FRAME_MAX_WINDOW) {
			*err = "WELCOME window out of range";
			return -1;
		}
		return frame_check_str(f->u.welcome.name, PROTO_MAX_NAME, err);
	case FRAME_ROUTE_ANSWER:
		if (f->u.code.code != ROUTE_ACCEPTED && f->u.code.code != ROUTE_REFUSED) {
			*err = "ROUTE_ANSWER status must be ACCEPTED or REFUSED";
			return -1;
		}
		/* FALLTHROUGH */
	case FRAME_REJECT:
	case FRAME_REFUSE:
	case FRAME_GOAWAY:
		return frame_check_str(f->u.code.reason, PROTO_MAX_REASON, err);
	case FRAME_ROUTE:
		return frame_check_route(&f->u.route, err);
	case FRAME_OPEN:
		return frame_check_open(&f->u.open, err);
	case FRAME_WINDOW:
		if (f->u.window == 0 || f->u.window > FRAME_MAX_WINDOW) {
			*err = "WINDOW increment out of range";
			return -1;
		}
		return 0;
	case FRAME_DATA:
	case FRAME_DATAGRAM:
		if (f->len > FRAME_MAX_DATA) {
			*err = sp->elen;
			return -1;
		}
		if (f->len > 0 && f->payload == NULL) {
			*err = "payload missing";
			return -1;
		}
		return 0;
	default: /* ACCEPT FIN RST PING PONG: every value is valid */
		return 0;
	}
badversion:
	*err = "unsupported protocol version";
	return -1;
}

/* Parse the payload of a frame whose header is already in *f. */
static int frame_parse(struct frame *f, const char **err)
{
	struct frame_rd r = {f->payload, f->len, 0};

	switch (f->type) {
	case FRAME_HELLO:
		f->u.hello.version = frame_rd16(&r);
		frame_rdbytes(&r, f->u.hello.challenge, PROTO_CHALLENGE_LEN);
		break;
	case FRAME_AUTH:
		f->u.auth.version = frame_rd16(&r);
		frame_rdbytes(&r, f->u.auth.pubkey, PROTO_PUBKEY_LEN);
		frame_rdbytes(&r, f->u.auth.sig, PROTO_SIG_LEN);
		if (frame_rdstr(&r, f->u.auth.name, PROTO_MAX_NAME, err) < 0)
			return -1;
		break;
	case FRAME_WELCOME:
		f->u.welcome.window = frame_rd32(&r);
		f->u.welcome.ping_ms = frame_rd32(&r);
		if (frame_rdstr(&r, f->u.welcome.name, PROTO_MAX_NAME, err) < 0)
			return -1;
		break;
	case FRAME_REJECT:
	case FRAME_ROUTE_ANSWER:
	case FRAME_REFUSE:
	case FRAME_GOAWAY:
		f->u.code.code = frame_rd32(&r);
		if (frame_rdstr(&r, f->u.code.reason, PROTO_MAX_REASON, err) < 0)
			return -1;
		break;
	case FRAME_ROUTE:
		f->u.route.kind = frame_rd8(&r);
		f->u.route.port_lo = frame_rd16(&r);
		f->u.route.port_hi = frame_rd16(&r);
		f->u.route.hsts = frame_rd32(&r);
		if (frame_rdstr(&r, f->u.route.host, PROTO_MAX_HOST, err) < 0)
			return -1;
		break;
	case FRAME_OPEN:
		f->u.open.route = frame_rd32(&r);
		f->u.open.kind = frame_rd8(&r);
		f->u.open.family = frame_rd8(&r);
		frame_rdbytes(&r, f->u.open.addr, sizeof(f->u.open.addr));
		f->u.open.port = frame_rd16(&r);
		f->u.open.dst_family = frame_rd8(&r);
		frame_rdbytes(&r, f->u.open.dst_addr, sizeof(f->u.open.dst_addr));
		f->u.open.dst_port = frame_rd16(&r);
		break;
	case FRAME_WINDOW:
		f->u.window = frame_rd32(&r);
		break;
	case FRAME_RST:
		f->u.code.code = frame_rd32(&r);
		break;
	case FRAME_PING:
	case FRAME_PONG:
		f->u.ping = frame_rd64(&r);
		break;
	default: /* ACCEPT FIN DATA DATAGRAM: payload used as is */
		r.n = 0;
		break;
	}
	if (r.bad) {
		*err = "frame payload too short";
		return -1;
	}
	if (r.n != 0) {
		*err = "trailing bytes after frame payload";
		return -1;
	}
	return 0;
}

/*
 * On FRAME_ERROR the header fields (type, flags, stream, len) are left in *f
 * when the header was complete, so that the caller can log them.
 */
ssize_t frame_decode(const uint8_t *buf, size_t len, struct frame *f, const char **err)
{
	const struct frame_spec *sp;
	const char *dummy;

	if (err == NULL)
		err = &dummy;
	memset(f, 0, sizeof(*f));
	if (len < FRAME_HEADER_LEN)
		return FRAME_INCOMPLETE;
	f->type = buf[0];
	f->flags = buf[1];
	f->stream = frame_get32(buf + 2);
	f->len = frame_get32(buf + 6);

	/* Judge the header before waiting for the payload it announces. */
	if ((sp = frame_spec(f->type)) == NULL) {
		*err = "unknown frame type";
		return FRAME_ERROR;
	}
	if (f->len < sp->min || f->len > sp->max) {
		*err = sp->elen;
		return FRAME_ERROR;
	}
	if (f->flags & ~sp->flags) {
		*err = "frame flags not defined for this type";
		return FRAME_ERROR;
	}
	if ((sp->stream == STREAM_ZERO) != (f->stream == 0)) {
		*err = sp->stream == STREAM_ZERO ? "stream id must be 0 for this frame type"
		                                 : "stream id 0 not allowed for this frame type";
		return FRAME_ERROR;
	}
	if (len - FRAME_HEADER_LEN < f->len)
		return FRAME_INCOMPLETE;

	f->payload = buf + FRAME_HEADER_LEN;
	if (frame_parse(f, err) < 0 || frame_check(f, err) < 0)
		return FRAME_ERROR;
	return (ssize_t)(FRAME_HEADER_LEN + f->len);
}

uint32_t frame_get_len(const uint8_t *hdr)
{
	return frame_get32(hdr + 6);
}

void frame_put_header(uint8_t *out, uint8_t type, uint8_t flags, uint32_t stream, uint32_t len)
{
	out[0] = type;
	out[1] = flags;
	frame_put32(out + 2, stream);
	frame_put32(out + 6, len);
}

/* Payload length of a frame that passed frame_check(). */
static size_t frame_payload_len(const struct frame *f)
{
	switch (f->type) {
	case FRAME_HELLO:
		return HELLO_LEN;
	case FRAME_AUTH:
		return AUTH_MIN + (size_t)frame_strlen(f->u.auth.name, PROTO_MAX_NAME);
	case FRAME_WELCOME:
		return WELCOME_MIN + (size_t)frame_strlen(f->u.welcome.name, PROTO_MAX_NAME);
	case FRAME_REJECT:
	case FRAME_ROUTE_ANSWER:
	case FRAME_REFUSE:
	case FRAME_GOAWAY:
		return CODE_FRAME_MIN + (size_t)frame_strlen(f->u.code.reason, PROTO_MAX_REASON);
	case FRAME_ROUTE:
		return ROUTE_MIN + (size_t)frame_strlen(f->u.route.host, PROTO_MAX_HOST);
	case FRAME_OPEN:
		return OPEN_LEN;
	case FRAME_WINDOW:
	case FRAME_RST:
		return U32_LEN;
	case FRAME_PING:
	case FRAME_PONG:
		return U64_LEN;
	case FRAME_DATA:
	case FRAME_DATAGRAM:
		return f->len;
	default: /* ACCEPT FIN */
		return 0;
	}
}

size_t frame_encode(uint8_t *out, size_t cap, const struct frame *f)
{
	size_t plen, total;
	uint8_t *p;

	if (frame_check(f, NULL) < 0)
		return 0;
	plen = frame_payload_len(f);
	total = FRAME_HEADER_LEN + plen;
	if (out == NULL || cap < total)
		return 0;
	frame_put_header(out, f->type, f->flags, f->stream, (uint32_t)plen);
	p = out + FRAME_HEADER_LEN;

	switch (f->type) {
	case FRAME_HELLO:
		p = frame_put16(p, f->u.hello.version);
		p = frame_putbytes(p, f->u.hello.challenge, PROTO_CHALLENGE_LEN);
		break;
	case FRAME_AUTH:
		p = frame_put16(p, f->u.auth.version);
		p = frame_putbytes(p, f->u.auth.pubkey, PROTO_PUBKEY_LEN);
		p = frame_putbytes(p, f->u.auth.sig, PROTO_SIG_LEN);
		p = frame_putstr(p, f->u.auth.name, plen - AUTH_MIN);
		break;
	case FRAME_WELCOME:
		p = frame_put32(p, f->u.welcome.window);
		p = frame_put32(p, f->u.welcome.ping_ms);
		p = frame_putstr(p, f->u.welcome.name, plen - WELCOME_MIN);
		break;
	case FRAME_REJECT:
	case FRAME_ROUTE_ANSWER:
	case FRAME_REFUSE:
	case FRAME_GOAWAY:
		p = frame_put32(p, f->u.code.code);
		p = frame_putstr(p, f->u.code.reason, plen - CODE_FRAME_MIN);
		break;
	case FRAME_ROUTE:
		*p++ = f->u.route.kind;
		p = frame_put16(p, f->u.route.port_lo);
		p = frame_put16(p, f->u.route.port_hi);
		p = frame_put32(p, f->u.route.hsts);
		p = frame_putstr(p, f->u.route.host, plen - ROUTE_MIN);
		break;
	case FRAME_OPEN:
		p = frame_put32(p, f->u.open.route);
		*p++ = f->u.open.kind;
		*p++ = f->u.open.family;
		p = frame_putbytes(p, f->u.open.addr, sizeof(f->u.open.addr));
		p = frame_put16(p, f->u.open.port);
		*p++ = f->u.open.dst_family;
		p = frame_putbytes(p, f->u.open.dst_addr, sizeof(f->u.open.dst_addr));
		p = frame_put16(p, f->u.open.dst_port);
		break;
	case FRAME_WINDOW:
		p = frame_put32(p, f->u.window);
		break;
	case FRAME_RST:
		p = frame_put32(p, f->u.code.code);
		break;
	case FRAME_PING:
	case FRAME_PONG:
		p = frame_put64(p, f->u.ping);
		break;
	case FRAME_DATA:
	case FRAME_DATAGRAM:
		/* memmove: the caller may have built the payload in place at out + 10. */
		if (plen > 0)
			memmove(p, f->payload, plen);
		p += plen;
		break;
	default: /* ACCEPT FIN */
		break;
	}
	return (size_t)(p - out);
}

size_t proto_auth_message(uint8_t *out, uint16_t version, const uint8_t *challenge,
                          const uint8_t *pubkey, const char *name)
{
	size_t n = 0;
	uint8_t *p = out;

	if (name != NULL) {
		while (n <= PROTO_MAX_NAME && name[n] != '\0')
			n++;
		if (n > PROTO_MAX_NAME)
			return 0; /* cannot be sent in AUTH, so never signed */
	}
	p = frame_putbytes(p, AUTH_SIGN_TAG, sizeof(AUTH_SIGN_TAG));
	p = frame_put16(p, version);
	p = frame_putbytes(p, challenge, PROTO_CHALLENGE_LEN);
	p = frame_putbytes(p, pubkey, PROTO_PUBKEY_LEN);
	*p++ = (uint8_t)n;
	if (n > 0)
		p = frame_putbytes(p, name, n);
	return (size_t)(p - out);
}
