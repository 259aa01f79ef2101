/*
 * edge/acme.h - the built-in ACME client (RFC 8555, HTTP-01 challenges).
 *
 * One worker thread does all the network I/O, key generation and file
 * writing, off the event loop.  The loop asks for certificates with
 * acme_want(), answers the CA's HTTP-01 requests on listen.http with
 * acme_challenge(), and reloads its certificate store when
 * acme_take_updated() says new files were written (the worker wakes the loop
 * with lws_cancel_service()).
 *
 * Files, all in tls.cert_dir: acme-account.key (the account's EC P-256 key,
 * PEM, 0600, created once), and per host <host>.key (a fresh EC P-256 key
 * for every certificate, PKCS#8 PEM, 0600) and <host>.crt (the chain as the
 * CA sent it, leaf first).  Both are replaced atomically, key first.
 *
 * Renewal: at max(notAfter - renew_before_days, notBefore + 2/3 of the
 * lifetime), i.e. 30 days before expiry for 90-day certificates and at two
 * thirds of the lifetime for short-lived ones; certificates are re-examined
 * at least hourly.  Failures are retried after RELAIS_ACME_BACKOFF_MS
 * (default 60000 ms), doubling up to 6 hours.  One host gets at most one
 * certificate per RELAIS_ACME_MIN_INTERVAL_MS (default 10 min), and a
 * certificate that arrives expired or already due for renewal is refused.
 * A rate limit (429, 503, rateLimited) pauses every request until the CA's
 * Retry-After.  The account is registered once per run (again only when the
 * CA says it does not know it).
 */
#ifndef RELAIS_EDGE_ACME_H
#define RELAIS_EDGE_ACME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct edge_config;
struct lws_context;
struct evp_pkey_st;

#define ACME_TOKEN_MAX      128 /* longest HTTP-01 token accepted from a CA */
#define ACME_KEYAUTH_MAX    (ACME_TOKEN_MAX + 1 + 43 + 1)
#define ACME_BACKOFF_MAX_MS (6u * 3600u * 1000u)

/**
 * Start the worker for cfg->tls (needs tls.acme and tls.cert_dir; the
 * settings are copied).  ctx may be NULL (no wake-up).  Creates cert_dir
 * (0700) when missing.  Returns 0, or -1 with a logged reason.  Does no
 * network I/O itself: certificates are requested only through acme_want().
 */
int acme_start(const struct edge_config *cfg, struct lws_context *ctx);

/**
 * Take new ACME settings after a configuration reload (thread-safe, no I/O).
 * A different directory, CA file or email drops the cached account so the
 * next order registers again.  No effect when the worker is not running.
 */
void acme_reload(const struct edge_config *cfg);

/**
 * Make sure a valid certificate for host exists in cert_dir (thread-safe,
 * returns at once): request one when <host>.crt is missing, unreadable,
 * does not match <host>.key (or that key is readable by others, which the
 * certificate store refuses) or does not name host; renew it when due.  Once
 * wanted, a host stays managed (checked at least hourly) until acme_stop().
 * Wildcards and invalid names are refused with a logged warning.
 */
void acme_want(const char *host);

/**
 * acme_want() for a host an agent's route needs, counted against that
 * agent (owner, its name): an owner has at most cap hosts managed at once
 * (cap 0: none), counting only the hosts it added first.  A host already
 * managed is only checked again.  Returns 0 when host is managed, 1 when
 * refused because owner is at its cap (the caller logs it), -1 when refused
 * for another reason (logged).
 */
int acme_want_for(const char *host, const char *owner, uint32_t cap);

/**
 * No route needs host any more (thread-safe): when an agent added it and
 * cert_dir has no <host>.crt (never issued), stop managing it, so it no
 * longer takes a place in its agent's cap.  Issued hosts stay, to be renewed.
 */
void acme_forget(const char *host);

/**
 * acme_forget() every agent-added host for which needed(host, arg) returns
 * 0; returns how many were dropped.  needed is called with the module's
 * lock held: it must not call back into this module.
 */
size_t acme_prune(int (*needed)(const char *host, void *arg), void *arg);

/** 1 when host (lower case) is managed by the running worker, else 0. */
int acme_managed(const char *host);

/**
 * The key authorization to serve for an HTTP-01 token being validated, as
 * the body of GET /.well-known/acme-challenge/<token> (thread-safe).
 * Returns 1 with it in out[0..cap) (ACME_KEYAUTH_MAX suffices), 0 when the
 * token is unknown (answer 404).
 */
int acme_challenge(const char *token, char *out, size_t cap);

/** Loop side: 1 once after new certificate files were written, else 0. */
int acme_take_updated(void);

/** Stop the worker (aborting a request in progress) and join it.  Safe when not started. */
void acme_stop(void);

/* ---- pure helpers, exported for the unit tests --------------------------------- */

/**
 * base64url without padding (RFC 4648 §5, RFC 7515 §2) of in[0..len) into
 * out[0..cap) with a NUL.  Returns the length written, or -1 when it does
 * not fit.
 */
int acme_b64url(const void *in, size_t len, char *out, size_t cap);

/** Decode unpadded base64url into out[0..cap); returns the byte count or -1. */
int acme_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/**
 * The public JWK of an EC P-256 key in the canonical form of RFC 7638 §3
 * ({"crv":"P-256","kty":"EC","x":"...","y":"..."}, no spaces) into
 * out[0..cap).  Returns its length or -1.
 */
int acme_jwk(struct evp_pkey_st *key, char *out, size_t cap);

/** RFC 7638 thumbprint: base64url(SHA-256(jwk)) into out (44 bytes with NUL); 0 or -1. */
int acme_thumbprint(const char *jwk, char out[44]);

/** Raw ES256 signature (RFC 7518 §3.4: R || S, 32 bytes each) of msg; 0 or -1. */
int acme_es256(struct evp_pkey_st *key, const void *msg, size_t len, uint8_t sig[64]);

/**
 * A JWS in flattened JSON serialization (RFC 8555 §6.2): protected header
 * {"alg":"ES256", then "jwk" (when jwk is not NULL) or "kid", "nonce",
 * "url"}, payload base64url(payload), or "" for POST-as-GET when payload is
 * NULL.  Returns a malloc'd string (caller frees) or NULL.
 */
char *acme_jws(struct evp_pkey_st *key, const char *jwk, const char *kid, const char *nonce,
               const char *url, const char *payload);

/**
 * When to renew a certificate valid from not_before to not_after:
 * max(not_after - renew_days, not_before + 2/3 of the lifetime).
 */
time_t acme_renew_at(time_t not_before, time_t not_after, uint32_t renew_days);

/** Backoff after failures consecutive failures (>= 1): base doubling, at most 6 h. */
uint32_t acme_backoff_ms(uint32_t base_ms, unsigned failures);

/**
 * How long every request to the CA pauses after an error answer with this
 * HTTP status, problem type (full URN, may be NULL) and Retry-After
 * (seconds, 0 when absent): for 429, 503 or rateLimited (RFC 8555 §6.6)
 * Retry-After clamped to 1 min..24 h, 1 h without one; else 0.
 */
uint64_t acme_rate_pause_ms(int status, const char *type, uint32_t retry_after);

/**
 * Summarise an ACME problem document (RFC 7807, RFC 8555 §6.7) as
 * "detail (type)" into out[0..cap), the type without its
 * "urn:ietf:params:acme:error:" prefix.  Returns 0, or -1 when body is not
 * a problem document.
 */
int acme_problem(const char *body, size_t len, char *out, size_t cap);

#endif
