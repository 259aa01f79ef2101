/*
 * edge/certs.h - the edge's certificate store: one OpenSSL SSL_CTX per host
 * name or wildcard, from tls.cert_dir and from explicit pairs (tunnel.cert).
 *
 * Naming scheme in the directory: <host>.crt + <host>.key for a host,
 * _wildcard.<domain>.crt + _wildcard.<domain>.key for *.<domain>; the .crt
 * holds the leaf certificate then its chain, PEM.  Other files are ignored,
 * so a writer can prepare "x.crt.tmp" and rename it into place.
 *
 * Relais owns this map rather than lws vhosts so hosts and certificates can
 * come and go at runtime: a replaced SSL_CTX is only released by the map,
 * connections that hold it (SSL_new took a reference) carry on with it.
 * One module-wide store, used from the event loop thread only.  Loading
 * touches the disk (a few stat() per pair on each reload, reads on change).
 */
#ifndef RELAIS_EDGE_CERTS_H
#define RELAIS_EDGE_CERTS_H

#include <stddef.h>

struct ssl_ctx_st;

#define CERTS_MAX      4096      /* pairs loaded from the directory, at most */
#define CERTS_FILE_MAX (1 << 20) /* larger .crt/.key files are refused */

/**
 * Start the store with the pairs found in cert_dir (NULL or "": none) and
 * create the reject context.  Calling it again starts over.  Returns 0, or
 * -1 when the directory cannot be read (logged; the store is still usable
 * and later certs_reload() calls retry it).
 */
int certs_init(const char *cert_dir);

/**
 * Add or replace the pair crt/key under name (a host, or "*.domain"), e.g.
 * tunnel.cert/tunnel.key under tunnel.hostname.  Explicit pairs win over the
 * directory's for the same name and are re-read by certs_reload() when their
 * files change.  The pair is validated first; on failure the previous pair
 * stays and -1 is returned with the reason in err[0..errlen).
 */
int certs_add(const char *name, const char *crt, const char *key, char *err, size_t errlen);

/**
 * Rescan: load new pairs and pairs whose files changed (mtime, ctime, size
 * or inode), drop pairs whose .crt is gone.  A pair that fails validation
 * (unreadable, truncated, key does not match, expired, private key readable
 * by others) is logged once and skipped; the previous good one stays.
 */
void certs_reload(void);

/**
 * The SSL_CTX for sni: the exact name, else the wildcard of its parent
 * domain (one label only, RFC 6125 §6.4.3: *.example.com covers
 * a.example.com, not a.b.example.com nor example.com); NULL when none.
 * Borrowed and valid until the next certs_reload()/certs_add()/certs_free():
 * pass it straight to SSL_new(), which takes its own reference.
 */
struct ssl_ctx_st *certs_lookup(const char *sni);

/**
 * Check the pair crt/key as the store would before serving it for name:
 * regular files of sane size, key not accessible by others, key matching
 * the certificate, certificate not expired (name NULL: served for no name
 * in particular, so not checked against one).  Nothing is kept.  Returns 0
 * when the pair is usable, else -1 with the reason in err[0..errlen).
 */
int certs_check_pair(const char *name, const char *crt, const char *key, char *err, size_t errlen);

/** 1 when certs_lookup(host) would find a certificate, else 0. */
int certs_covers(const char *host);

/** notAfter (time_t) of the certificate certs_lookup(host) would use, 0 if none. */
long certs_expiry(const char *host);

/**
 * A server SSL_CTX without certificate whose servername callback fails every
 * handshake with a fatal unrecognized_name alert, for unknown or missing SNI
 * (never another host's certificate).  Borrowed; NULL before certs_init().
 */
struct ssl_ctx_st *certs_reject_ctx(void);

/** The directory given to certs_init(), or NULL. */
const char *certs_dir(void);

/** Number of names with a usable certificate. */
size_t certs_count(void);

/** Release the map's references and the reject context. */
void certs_free(void);

/**
 * Write a self-signed placeholder pair for host (EC P-256, valid `days`),
 * key mode 0600, each file written to a temporary name then renamed.  Used
 * for the agent endpoint until ACME has its real certificate.  0, or -1
 * with err.
 */
#define CERTS_PLACEHOLDER_ORG "relais placeholder"

int certs_make_selfsigned(const char *host, const char *crt, const char *key, int days, char *err,
                          size_t errlen);

#endif
