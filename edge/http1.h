/*
 * edge/http1.h - HTTP/1.1 message codec for the edge (RFC 9110, RFC 9112).
 *
 * Pure codec: no I/O, no allocation, no libwebsockets.  The edge parses each
 * request head itself, routes it by Host, forwards a rewritten head and then
 * passes the body bytes through unchanged; it parses the response head to
 * rewrite hop-by-hop fields and to know where the response ends.  Parsers
 * return pointers into the caller's buffer; writers fill a caller-supplied
 * buffer of fixed size and fail instead of truncating.
 *
 * Line endings: CRLF, or a bare LF (RFC 9112 §2.2) in heads; chunked bodies
 * pass through untouched and must use exact CRLF.  Written heads always use
 * CRLF, so the upstream never sees a framing we did not parse ourselves.
 */
#ifndef RELAIS_EDGE_HTTP1_H
#define RELAIS_EDGE_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP1_MAX_HEADERS       100
#define HTTP1_MAX_EMPTY_LINES   4    /* CRLFs ignored before a start line */
#define HTTP1_CHUNK_LINE_MAX    4096 /* chunk-size line incl. extensions and CRLF */
#define HTTP1_CHUNK_TRAILER_MAX 8192 /* trailer section incl. the final CRLF */
#define HTTP1_ROUTE_HOST_MAX    256  /* buffer for http1_route_host() */

struct http1_header {
	const char *name;
	size_t name_len;
	const char *value; /* trimmed of leading and trailing OWS */
	size_t value_len;
};

struct http1_head {
	const char *method; /* request */
	size_t method_len;
	const char *target; /* request */
	size_t target_len;
	int minor;          /* HTTP/1.<minor>: 0 or 1 */
	int status;         /* response */
	const char *reason; /* response, may be empty */
	size_t reason_len;
	struct http1_header headers[HTTP1_MAX_HEADERS];
	size_t nheaders;
	size_t head_len; /* bytes of the head incl. ignored empty lines and final CRLFCRLF */
};

#define HTTP1_INCOMPLETE 0
#define HTTP1_ERROR      (-1)

/**
 * Parse a request head at buf[0..len).  Returns head_len (> 0),
 * HTTP1_INCOMPLETE, or HTTP1_ERROR with *err (static text) and *status set
 * to the answer to send: 400 malformed or bad framing, 431 head over max_head
 * bytes (reported as soon as len reaches max_head without a complete head) or
 * over HTTP1_MAX_HEADERS fields, 501 unsupported Transfer-Encoding, 505 HTTP
 * version other than 1.0/1.1.  A successful parse also passed
 * http1_request_body().  Pointers in *h point into buf; status/err may be NULL.
 */
ssize_t http1_parse_request(const char *buf, size_t len, size_t max_head, struct http1_head *h,
                            int *status, const char **err);

/**
 * Parse a response head ("HTTP/1.x NNN reason", status 100..599) at
 * buf[0..len).  Same conventions as http1_parse_request(); *status is 502 on
 * every error.  Framing is checked later by http1_response_body().
 */
ssize_t http1_parse_response(const char *buf, size_t len, size_t max_head, struct http1_head *h,
                             int *status, const char **err);

enum http1_body {
	HTTP1_BODY_NONE,
	HTTP1_BODY_LENGTH,  /* exactly *length bytes follow (may be 0) */
	HTTP1_BODY_CHUNKED, /* track with http1_chunked_feed() */
	HTTP1_BODY_CLOSE,   /* response body runs until the server closes */
	HTTP1_BODY_TUNNEL   /* raw bytes both ways from now on (101, CONNECT 2xx) */
};

/**
 * Request framing (RFC 9112 §6): Transfer-Encoding must be exactly "chunked"
 * (other codings 501; chunked not last or repeated, TE on HTTP/1.0, or TE with
 * Content-Length 400); Content-Length is digits, duplicates must agree.
 * Returns 0 with *kind and *length (LENGTH only), or -1 with *status and *err.
 */
int http1_request_body(const struct http1_head *h, enum http1_body *kind, uint64_t *length,
                       int *status, const char **err);

/**
 * Response framing (RFC 9112 §6.3): HEAD, 1xx, 204, 304 -> NONE; 101 or a
 * 2xx to CONNECT -> TUNNEL; chunked final coding -> CHUNKED; other codings ->
 * CLOSE; Content-Length -> LENGTH; nothing -> CLOSE.  TE with Content-Length,
 * TE on HTTP/1.0 and a bad Content-Length are errors (-1 with *err: send 502).
 * The caller must check that a 101 answers a request that asked to upgrade.
 */
int http1_response_body(const struct http1_head *h, int request_was_head, int request_was_connect,
                        enum http1_body *kind, uint64_t *length, const char **err);

/** First header named name (case-insensitive), or NULL. */
const struct http1_header *http1_find(const struct http1_head *h, const char *name);

/**
 * 1 when token (case-insensitive) is an element of the comma-separated list
 * formed by every header named name ("Connection: keep-alive, Upgrade" has
 * "upgrade"), else 0.
 */
int http1_has_token(const struct http1_head *h, const char *name, const char *token);

/**
 * 1 when the connection persists after this message: HTTP/1.1 without
 * "Connection: close", or HTTP/1.0 with "Connection: keep-alive".
 */
int http1_keep_alive(const struct http1_head *h);

/**
 * 1 when the request is an HTTP/1.1 upgrade the edge forwards (Connection:
 * upgrade and an Upgrade field), 0 when one of its protocols is h2c: that
 * request is forwarded as an ordinary one, without Upgrade.
 */
int http1_is_upgrade(const struct http1_head *h);

/*
 * Incremental chunked-body tracker (RFC 9112 §7.1): the bytes pass through
 * unchanged, it only finds where the body ends and rejects anything another
 * parser could frame differently (bare LF, whitespace, bad extensions).
 */
struct http1_chunked {
	int state;
	uint64_t remaining; /* chunk-size being read, then data bytes left */
	size_t linelen;     /* bytes of the current size line / trailer section */
	uint64_t total;     /* decoded payload bytes so far, for limits */
	/* trailer field lines among the bytes the last feed consumed, at
	 * buf[trailer_off .. trailer_off + trailer_len); the last-chunk line
	 * and the final CRLF are not part of them */
	size_t trailer_off, trailer_len;
	/* if set, called with each run of payload bytes the feed consumes (a
	 * proxy that removes the chunking for an HTTP/1.0 client) */
	void (*on_data)(void *arg, const char *p, size_t n);
	void *on_data_arg;
};

/** Prepare *c for a new body. */
void http1_chunked_init(struct http1_chunked *c);

/**
 * Feed buf[0..len).  Returns how many of these bytes belong to the body (all
 * of them unless the body ends inside buf) and sets *done to 1 once the
 * last-chunk, trailers and final CRLF are consumed (further feeds return 0);
 * -1 with *err on malformed input, overflow or a limit exceeded.  Sets
 * c->trailer_off/trailer_len for a caller that drops trailer fields.
 */
ssize_t http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len, int *done,
                           const char **err);

struct http1_forward {
	const char *client_ip;  /* "192.0.2.1", "2001:db8::1" */
	int tls;                /* client reached the edge over TLS */
	const char *host;       /* normalized host the request was routed by, may be NULL */
	int close;              /* ask the upstream to close after this request */
	int drop_authorization; /* Authorization: Basic is the edge's (access lists): dropped */
};

/**
 * Write the head to forward upstream into out[0..cap): the request line as
 * received; headers minus hop-by-hop ones (Connection and those it names,
 * Keep-Alive, Proxy-Connection, TE, Trailer, HTTP2-Settings, Upgrade unless
 * upgrading, Proxy-Authorization) and minus client fields that could pass for the
 * edge's (Forwarded, X-Forwarded-*, X-Real-IP, Client-IP and other client-IP
 * fields, any name with '_'); a single
 * normalized Content-Length / Transfer-Encoding; Host from an absolute-form
 * target; then X-Forwarded-For (appended), -Proto, -Host, X-Real-IP and
 * Connection (upgrade, or close when fw->close).  Returns bytes written, or
 * -1 when cap is too small or the head or fw is invalid.
 */
ssize_t http1_write_request(const struct http1_head *h, const struct http1_forward *fw, char *out,
                            size_t cap);

/**
 * Write the response head for the client into out[0..cap): the status line as
 * received, headers minus hop-by-hop ones (Upgrade kept for a 101, which gets
 * "Connection: upgrade"), one Content-Length if valid, none and no
 * Transfer-Encoding for a 1xx or 204, no Transfer-Encoding for an HTTP/1.0
 * client (the caller removes the chunking and closes), then "Connection:
 * close" when close, else "Connection: keep-alive" for an HTTP/1.0 client.
 * 1xx other than 101 get no Connection field.  Returns bytes written or -1
 * when cap is too small.
 */
ssize_t http1_write_response(const struct http1_head *h, int close, int client_minor, char *out,
                             size_t cap);

/**
 * Write a complete small error response (status 200..599 except 204/304)
 * into out[0..cap): headers (text/html, Content-Length, Allow for a 405,
 * Connection: close when close, Cache-Control: no-store) and an HTML page
 * naming the status.
 * Returns bytes written or -1.
 */
ssize_t http1_error_response(int status, int close, char *out, size_t cap);

/** The same with one more header line field ("Name: value", no CRLF; the
 *  caller's text, not the client's: WWW-Authenticate, Retry-After). */
ssize_t http1_error_response_with(int status, int close, const char *field, char *out, size_t cap);

/** Standard reason phrase for status ("Not Found"), "Unknown" for others. */
const char *http1_reason(int status);

/**
 * Put the host to route by into out[0..cap) (cap >= HTTP1_ROUTE_HOST_MAX
 * suffices): from an absolute-form (http/https) or CONNECT target, else the
 * Host field; lower-cased, port and a trailing dot stripped, IPv6 literals
 * kept in brackets.  Returns 0, or -1 (answer 400) for a missing Host on
 * HTTP/1.1, several Host fields, bad characters or a bad port (RFC 9112 §3.2).
 */
int http1_route_host(const struct http1_head *h, char *out, size_t cap);

#endif
