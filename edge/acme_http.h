/*
 * edge/acme_http.h - the tiny HTTPS client the ACME worker talks to its CA
 * with.  Blocking from the caller's point of view (it runs on the ACME
 * thread, never on the event loop): one TLS connection per request, bounded
 * waits, bounded responses, and an optional descriptor that aborts a request
 * in progress as soon as it becomes readable (used to stop promptly).
 */
#ifndef RELAIS_EDGE_ACME_HTTP_H
#define RELAIS_EDGE_ACME_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ACME_HTTP_MAX_BODY    (1024 * 1024) /* response bodies larger than this fail */
#define ACME_HTTP_MAX_HEAD    16384         /* response head limit */
#define ACME_HTTP_IO_TIMEOUT  30000         /* ms: connect, and each wait for bytes */
#define ACME_HTTP_REQ_TIMEOUT 90000         /* ms: a whole request, however it trickles */
#define ACME_HTTP_URL_MAX     1024
#define ACME_HTTP_NONCE_MAX   256

struct ssl_ctx_st;

struct acme_http {
	struct ssl_ctx_st *ssl; /* verification against ca_file or the system CAs */
	int cancel_fd;          /* readable = abort now; -1 for none */
	int io_timeout_ms;
	int req_timeout_ms;
};

struct acme_http_res {
	int status;
	char *body; /* NUL-terminated (body_len excludes it); free with acme_http_res_free */
	size_t body_len;
	char location[ACME_HTTP_URL_MAX]; /* Location, "" when absent or too long */
	char nonce[ACME_HTTP_NONCE_MAX];  /* Replay-Nonce, "" when absent or malformed */
	char link_up[ACME_HTTP_URL_MAX];  /* target of Link: <...>;rel="up", "" when absent */
	char content_type[128];           /* media type, lower case, without parameters */
	uint32_t retry_after;             /* Retry-After in seconds (>= 1), 0 when absent */
};

/**
 * The seconds a Retry-After value (len bytes at v) asks for at time now:
 * delay-seconds or an HTTP-date (IMF-fixdate), at least 1 and at most one
 * day; 0 when it is neither.
 */
uint32_t acme_http_retry_after(const char *v, size_t len, time_t now);

/**
 * Prepare a client: TLS 1.2+, peer verification against ca_file (PEM) when
 * not NULL, else the system's trust store.  Returns 0, or -1 with a message
 * in err.  Free with acme_http_free().
 */
int acme_http_init(struct acme_http *c, const char *ca_file, int cancel_fd, char *err,
                   size_t errlen);

/** Release what acme_http_init() set up; safe on a zeroed struct. */
void acme_http_free(struct acme_http *c);

/**
 * Send one request (method "GET", "HEAD" or "POST"; body with content_type
 * for POST) to an https:// url and read the whole response into *res.  The
 * server's certificate must match the URL's host name or IP.  Returns 0 with
 * *res filled (any status; the caller owns res->body), or -1 with a message
 * in err (connection, TLS, timeout, cancelled, malformed or oversized reply).
 */
int acme_http_request(struct acme_http *c, const char *method, const char *url,
                      const char *content_type, const char *body, size_t body_len,
                      struct acme_http_res *res, char *err, size_t errlen);

/** Free res->body and clear *res. */
void acme_http_res_free(struct acme_http_res *res);

/**
 * Split "https://host[:port][/path]" into host (brackets removed from an
 * IPv6 literal), port (default 443) and path (default "/").  Returns 0, or -1
 * for another scheme, user info, a bad port, or a part that does not fit.
 */
int acme_http_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port, char *path,
                        size_t pathcap);

/**
 * Find, in one Link field value (RFC 8288: comma-separated "<uri>; params"),
 * the first link whose rel parameter contains rel, and copy its URI to
 * out[0..cap).  Returns 1 found, 0 absent (or too long).
 */
int acme_http_link(const char *value, size_t len, const char *rel, char *out, size_t cap);

/**
 * Decode a complete chunked body (already validated by http1_chunked_feed) in
 * place.  Returns the decoded length, or -1 when it is malformed.
 */
long acme_http_dechunk(char *buf, size_t len);

#endif
