/*
 * edge/certs.c - the edge's certificate store (see certs.h).
 *
 * Each name maps to one SSL_CTX configured for this edge: TLS 1.2 and 1.3
 * only, ECDHE with AEAD ciphers for TLS 1.2, server preference, no
 * compression, no renegotiation, ALPN limited to HTTP/1.x.  A pair is
 * loaded into a fresh SSL_CTX and checked before it replaces anything, so a
 * half-written or wrong file never takes a working host down.  The file
 * identities seen at the last attempt are kept so that a broken pair is
 * reported once, not on every rescan, and retried as soon as it changes.
 */
#include "edge/certs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/hostpat.h"
#include "common/log.h"

#define NAME_MAX_LEN  255 /* "*." + 253 */
#define WILDCARD_PFX  "_wildcard."
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

/* What identifies a file's content without reading it. */
struct fid {
	int ok;  /* stat() succeeded */
	int err; /* else its errno */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct cert {
	char name[NAME_MAX_LEN + 1]; /* "a.example.com" or "*.example.com" */
	char *crt, *key;             /* paths */
	SSL_CTX *ctx;                /* last good pair; NULL until one loaded */
	long not_after;
	struct fid crt_id, key_id; /* at the last attempt */
	int tried;                 /* crt_id/key_id are valid */
	int explicit_pair;         /* from certs_add() */
	int seen;                  /* found by the current directory scan */
};

static struct {
	char *dir;
	struct cert *v;
	size_t n, cap;
	SSL_CTX *reject;
	int dir_failed; /* last opendir() failed: log the next failure only once */
} store;

/* ------------------------------------------------------------ helpers */

static void fid_get(const char *path, struct fid *id, struct stat *st)
{
	memset(id, 0, sizeof(*id));
	if (stat(path, st) < 0) {
		id->err = errno;
		memset(st, 0, sizeof(*st));
		return;
	}
	id->ok = 1;
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
	id->ctime = st->st_ctim;
}

static int fid_same(const struct fid *a, const struct fid *b)
{
	return a->ok == b->ok && a->err == b->err && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
	       a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Append OpenSSL's most recent error reason to err and empty its queue, so
 * stale errors never confuse SSL_get_error() on another connection. */
static void ssl_reason(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, errlen, "%s (%s)", what, buf);
	} else {
		snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

static int no_password(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return 0; /* encrypted keys are refused instead of prompting on a tty */
}

/*
 * RFC 7301 §3.2: pick http/1.1 (or http/1.0) when offered; h2 is never
 * chosen, as the edge speaks HTTP/1.x.  A client that offers ALPN but
 * neither gets the fatal no_application_protocol alert the RFC requires
 * rather than a connection in a protocol it did not ask for (the ALPACA
 * cross-protocol attacks; nginx does the same since 1.21.4).  No ALPN
 * offered: none answered.
 */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i = 0;

	(void)ssl;
	(void)arg;
	while (i < inlen) {
		unsigned int n = in[i];

		if (n == 0 || n > inlen - i - 1)
			break;
		if (n == 8 && (memcmp(in + i + 1, "http/1.1", 8) == 0 ||
		               memcmp(in + i + 1, "http/1.0", 8) == 0)) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A server SSL_CTX with the edge's protocol settings and no certificate yet. */
static SSL_CTX *ctx_new(char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		ssl_reason(err, errlen, "SSL_CTX_new failed");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS)) {
		ssl_reason(err, errlen, "cannot set TLS versions or ciphers");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
	                             SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                          SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_default_passwd_cb(ctx, no_password);
	return ctx;
}

static long asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return (long)timegm(&tm);
}

static void fmt_time(long t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%ld", t);
}

/*
 * Load and check one pair into a new SSL_CTX for name (NULL: no name to
 * check it for).  kst is the key file's stat() (for its mode).  Returns
 * the context (caller owns it) with *not_after, or NULL with the reason in
 * err.
 */
static SSL_CTX *pair_load(const char *name, const char *crt, const char *key,
                          const struct stat *cst, const struct stat *kst, long *not_after,
                          char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	X509 *x;
	char check[NAME_MAX_LEN + 16], when[32];

	if (!S_ISREG(cst->st_mode) || !S_ISREG(kst->st_mode)) {
		snprintf(err, errlen, "not a regular file");
		return NULL;
	}
	if (cst->st_size > CERTS_FILE_MAX || kst->st_size > CERTS_FILE_MAX) {
		snprintf(err, errlen, "file larger than %d bytes", CERTS_FILE_MAX);
		return NULL;
	}
	/* The key must not be readable by everyone (group is allowed, for
	 * setups like Debian's ssl-cert group); "chmod 600" fixes it. */
	if (kst->st_mode & (S_IROTH | S_IWOTH | S_IXOTH)) {
		snprintf(err, errlen, "private key %s is accessible by others (mode %03o)", key,
		         (unsigned)(kst->st_mode & 0777));
		return NULL;
	}
	ctx = ctx_new(err, errlen);
	if (!ctx)
		return NULL;
	if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1) {
		ssl_reason(err, errlen, "cannot load the certificate chain");
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL already compares the key with the certificate here */
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			ssl_reason(err, errlen, "the private key does not match the certificate");
		else
			ssl_reason(err, errlen, "cannot load the private key");
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_reason(err, errlen, "the private key does not match the certificate");
		goto fail;
	}
	x = SSL_CTX_get0_certificate(ctx);
	if (!x) {
		snprintf(err, errlen, "no certificate");
		goto fail;
	}
	*not_after = asn1_to_time(X509_get0_notAfter(x));
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		fmt_time(*not_after, when, sizeof(when));
		snprintf(err, errlen, "certificate expired at %s", when);
		goto fail;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		log_warn("certs: %s: %s is not valid yet", name ? name : crt, crt);
	if (!name) /* no name to check it for */
		goto done;
	/* Served anyway (it is what the operator put there), but say so. */
	if (name[0] == '*')
		snprintf(check, sizeof(check), "relais-check%s", name + 1);
	else
		snprintf(check, sizeof(check), "%s", name);
	if (X509_check_host(x, check, 0, 0, NULL) != 1)
		log_warn("certs: %s: %s does not name %s", name, crt, name);
done:
	ERR_clear_error();
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * (Re)load c when its files changed since the last attempt (always when
 * force).  A failure is logged, at debug level only while the files are
 * changing under us (the next scan retries).  Returns 0 when the store's context for c is good (new
 * or old), -1 when the attempt failed, with the reason in err.
 */
static int cert_refresh(struct cert *c, int force, char *err, size_t errlen)
{
	struct fid cid, kid, cid2, kid2;
	struct stat cst, kst, tmp;
	SSL_CTX *ctx;
	long not_after = 0;
	char when[32];
	int racing;

	fid_get(c->crt, &cid, &cst);
	fid_get(c->key, &kid, &kst);
	if (!force && c->tried && fid_same(&cid, &c->crt_id) && fid_same(&kid, &c->key_id))
		return c->ctx ? 0 : -1;
	c->tried = 1;
	c->crt_id = cid;
	c->key_id = kid;

	if (!cid.ok || !kid.ok) {
		const struct fid *bad = !cid.ok ? &cid : &kid;

		snprintf(err, errlen, "cannot read %s: %s", !cid.ok ? c->crt : c->key,
		         strerror(bad->err));
		ctx = NULL;
	} else {
		ctx = pair_load(c->name, c->crt, c->key, &cst, &kst, &not_after, err, errlen);
	}

	/* A writer replacing the files while we read them: try again next scan. */
	fid_get(c->crt, &cid2, &tmp);
	fid_get(c->key, &kid2, &tmp);
	racing = !fid_same(&cid, &cid2) || !fid_same(&kid, &kid2);
	if (racing)
		c->tried = 0;

	if (!ctx) {
		if (racing)
			log_debug("certs: %s: %s (files changing, will retry)", c->name, err);
		else
			log_warn("certs: %s: skipped: %s%s", c->name, err,
			         c->ctx ? "; keeping the previous certificate" : "");
		return -1;
	}
	fmt_time(not_after, when, sizeof(when));
	log_info("certs: %s: %s %s (expires %s)", c->name, c->ctx ? "replaced from" : "loaded",
	         c->crt, when);
	SSL_CTX_free(c->ctx); /* connections using it hold their own reference */
	c->ctx = ctx;
	c->not_after = not_after;
	return 0;
}

static void cert_clear(struct cert *c)
{
	SSL_CTX_free(c->ctx);
	free(c->crt);
	free(c->key);
	memset(c, 0, sizeof(*c));
}

/* The entry named name of the given kind, or NULL. */
static struct cert *cert_find(const char *name, int explicit_pair)
{
	for (size_t i = 0; i < store.n; i++)
		if (store.v[i].explicit_pair == explicit_pair && strcmp(store.v[i].name, name) == 0)
			return &store.v[i];
	return NULL;
}

/* A new zeroed entry owning copies of the paths, or NULL (logged). */
static struct cert *cert_new(const char *name, const char *crt, const char *key, int explicit_pair)
{
	struct cert *c;

	if (store.n == store.cap) {
		size_t cap = store.cap ? store.cap * 2 : 16;
		struct cert *v = realloc(store.v, cap * sizeof(*v));

		if (!v) {
			log_error("certs: out of memory");
			return NULL;
		}
		store.v = v;
		store.cap = cap;
	}
	c = &store.v[store.n];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->crt = strdup(crt);
	c->key = strdup(key);
	c->explicit_pair = explicit_pair;
	if (!c->crt || !c->key) {
		log_error("certs: out of memory");
		cert_clear(c);
		return NULL;
	}
	store.n++;
	return c;
}

static void cert_remove(size_t i)
{
	cert_clear(&store.v[i]);
	store.v[i] = store.v[store.n - 1];
	store.n--;
}

/* Lower-case name into out and check it is a host or "*.domain" pattern. */
static int name_norm(const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);

	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, name, n + 1);
	host_normalize(out);
	return hostpat_valid(out) ? 0 : -1;
}

/* ------------------------------------------------------------ directory */

/* The map name for a directory entry "x.crt", or -1 when it is not a pair. */
static int dir_name(const char *file, char *name, size_t namelen)
{
	size_t n = strlen(file);
	char base[NAME_MAX_LEN + 16];

	if (file[0] == '.' || n <= 4 || strcmp(file + n - 4, ".crt") != 0)
		return -1;
	n -= 4;
	if (n >= sizeof(base))
		return -1;
	memcpy(base, file, n);
	base[n] = '\0';
	if (strncmp(base, WILDCARD_PFX, strlen(WILDCARD_PFX)) == 0) {
		if (snprintf(name, namelen, "*.%s", base + strlen(WILDCARD_PFX)) >= (int)namelen)
			return -1;
		return name_norm(name, name, namelen);
	}
	return name_norm(base, name, namelen);
}

static void dir_scan(void)
{
	DIR *d;
	struct dirent *de;
	char name[NAME_MAX_LEN + 1], err[512];
	size_t ndir = 0, i;

	if (!store.dir)
		return;
	d = opendir(store.dir);
	if (!d) {
		if (!store.dir_failed)
			log_error("certs: cannot read tls.cert_dir %s: %s; keeping loaded "
			          "certificates",
			          store.dir, strerror(errno));
		store.dir_failed = 1;
		return;
	}
	if (store.dir_failed)
		log_info("certs: tls.cert_dir %s is readable again", store.dir);
	store.dir_failed = 0;

	for (i = 0; i < store.n; i++)
		store.v[i].seen = 0;
	while ((de = readdir(d)) != NULL) {
		struct cert *c;
		char crt[4096], key[4096];
		size_t n;

		if (dir_name(de->d_name, name, sizeof(name)) < 0)
			continue; /* not "<host>.crt" nor "_wildcard.<domain>.crt" */
		n = strlen(de->d_name) - 4;
		if (snprintf(crt, sizeof(crt), "%s/%s", store.dir, de->d_name) >=
		        (int)sizeof(crt) ||
		    snprintf(key, sizeof(key), "%s/%.*s.key", store.dir, (int)n, de->d_name) >=
		        (int)sizeof(key))
			continue;
		c = cert_find(name, 0);
		if (c && c->seen)
			continue; /* another spelling of the same name ("A.crt", "a.crt") */
		if (c && strcmp(c->crt, crt) != 0) {
			/* the name's files are now spelled differently: start over */
			free(c->crt);
			free(c->key);
			c->crt = strdup(crt);
			c->key = strdup(key);
			c->tried = 0;
			if (!c->crt || !c->key) {
				log_error("certs: out of memory");
				cert_remove((size_t)(c - store.v));
				continue;
			}
		}
		if (!c) {
			if (ndir >= CERTS_MAX) {
				log_warn("certs: more than %d pairs in %s; ignoring %s", CERTS_MAX,
				         store.dir, de->d_name);
				continue;
			}
			c = cert_new(name, crt, key, 0);
			if (!c)
				continue;
		}
		c->seen = 1;
		ndir++;
		(void)cert_refresh(c, 0, err, sizeof(err));
	}
	closedir(d);

	for (i = store.n; i-- > 0;) {
		struct cert *c = &store.v[i];

		if (c->explicit_pair || c->seen)
			continue;
		if (c->ctx)
			log_info("certs: %s: %s removed, certificate dropped", c->name, c->crt);
		cert_remove(i);
	}
}

/* ------------------------------------------------------------- lookup */

static struct cert *cert_lookup(const char *sni)
{
	char host[NAME_MAX_LEN + 1], wild[NAME_MAX_LEN + 2];
	const char *dot;
	struct cert *c;
	size_t n;

	if (!sni || !sni[0])
		return NULL;
	n = strlen(sni);
	if (n >= sizeof(host))
		return NULL;
	memcpy(host, sni, n + 1);
	host_normalize(host);
	if (n > 0 && host[n - 1] == '.')
		host[n - 1] = '\0';
	if (!host_valid(host))
		return NULL;
	if (((c = cert_find(host, 1)) && c->ctx) || ((c = cert_find(host, 0)) && c->ctx))
		return c;
	/* RFC 6125 §6.4.3: the wildcard stands for exactly the left-most label. */
	dot = strchr(host, '.');
	if (!dot || !dot[1])
		return NULL;
	snprintf(wild, sizeof(wild), "*%s", dot);
	if (((c = cert_find(wild, 1)) && c->ctx) || ((c = cert_find(wild, 0)) && c->ctx))
		return c;
	return NULL;
}

/* ------------------------------------------------------------ reject */

static int reject_servername(SSL *ssl, int *al, void *arg)
{
	(void)ssl;
	(void)arg;
	*al = SSL_AD_UNRECOGNIZED_NAME;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ------------------------------------------------------------ exported */

int certs_init(const char *cert_dir)
{
	char err[512];

	certs_free();
	store.reject = ctx_new(err, sizeof(err));
	if (!store.reject)
		fatalx("certs: cannot create the reject context: %s", err);
	/* OpenSSL >= 1.1.1 calls this for every ClientHello, with or without SNI. */
	SSL_CTX_set_tlsext_servername_callback(store.reject, reject_servername);
	SSL_CTX_set_alpn_select_cb(store.reject, NULL, NULL);

	if (!cert_dir || !cert_dir[0])
		return 0;
	store.dir = strdup(cert_dir);
	if (!store.dir)
		fatalx("certs: out of memory");
	dir_scan();
	if (store.dir_failed)
		return -1;
	log_info("certs: %zu certificate(s) from %s", certs_count(), store.dir);
	return 0;
}

int certs_add(const char *name, const char *crt, const char *key, char *err, size_t errlen)
{
	char norm[NAME_MAX_LEN + 1];
	struct cert *c, probe;

	if (!crt || !key) {
		snprintf(err, errlen, "certificate and key files are both required");
		return -1;
	}
	if (!name || name_norm(name, norm, sizeof(norm)) < 0) {
		snprintf(err, errlen, "invalid certificate name \"%s\"", name ? name : "");
		return -1;
	}
	c = cert_find(norm, 1);
	if (!c) {
		c = cert_new(norm, crt, key, 1);
		if (!c) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (cert_refresh(c, 1, err, errlen) < 0) {
			cert_remove((size_t)(c - store.v));
			return -1;
		}
		return 0;
	}
	if (strcmp(c->crt, crt) == 0 && strcmp(c->key, key) == 0)
		return cert_refresh(c, 1, err, errlen);

	/* New paths for the name: validate them before giving up the old pair. */
	probe = *c;
	probe.ctx = NULL;
	probe.crt = strdup(crt);
	probe.key = strdup(key);
	if (!probe.crt || !probe.key) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (cert_refresh(&probe, 1, err, errlen) < 0)
		goto fail;
	SSL_CTX_free(c->ctx);
	free(c->crt);
	free(c->key);
	*c = probe;
	return 0;

fail:
	free(probe.crt);
	free(probe.key);
	return -1;
}

void certs_reload(void)
{
	char err[512];

	dir_scan();
	for (size_t i = 0; i < store.n; i++)
		if (store.v[i].explicit_pair)
			(void)cert_refresh(&store.v[i], 0, err, sizeof(err));
}

int certs_check_pair(const char *name, const char *crt, const char *key, char *err, size_t errlen)
{
	struct stat cst, kst;
	SSL_CTX *ctx;
	long not_after = 0;

	if (stat(crt, &cst) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", crt, strerror(errno));
		return -1;
	}
	if (stat(key, &kst) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", key, strerror(errno));
		return -1;
	}
	ctx = pair_load(name, crt, key, &cst, &kst, &not_after, err, errlen);
	if (!ctx)
		return -1;
	SSL_CTX_free(ctx);
	return 0;
}

struct ssl_ctx_st *certs_lookup(const char *sni)
{
	struct cert *c = cert_lookup(sni);

	return c ? c->ctx : NULL;
}

int certs_covers(const char *host)
{
	return cert_lookup(host) != NULL;
}

long certs_expiry(const char *host)
{
	struct cert *c = cert_lookup(host);

	return c ? c->not_after : 0;
}

struct ssl_ctx_st *certs_reject_ctx(void)
{
	return store.reject;
}

const char *certs_dir(void)
{
	return store.dir;
}

size_t certs_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < store.n; i++) {
		const struct cert *c = &store.v[i], *e;

		/* a directory pair shadowed by a usable explicit one counts once */
		if (c->ctx && (c->explicit_pair || !(e = cert_find(c->name, 1)) || !e->ctx))
			n++;
	}
	return n;
}

void certs_free(void)
{
	for (size_t i = 0; i < store.n; i++)
		cert_clear(&store.v[i]);
	free(store.v);
	free(store.dir);
	SSL_CTX_free(store.reject);
	memset(&store, 0, sizeof(store));
}

/*
 * Write write()'s output for obj to path through a new temporary file in the
 * same directory (mkostemp: never an old file, whatever its mode), set to
 * mode, flushed to disk, renamed into place, and the directory flushed.
 */
static int certs_write_pem(const char *path, int mode, int (*write)(FILE *, void *), void *obj)
{
	char tmp[4096], dir[4096];
	const char *slash = strrchr(path, '/');
	FILE *f;
	int fd, ok, e;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return -1;
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fchmod(fd, (mode_t)mode) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	f = fdopen(fd, "w");
	if (!f) {
		e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	ok = write(f, obj) == 1;
	ok = fflush(f) == 0 && ok;
	ok = fsync(fileno(f)) == 0 && ok;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
}

static int certs_write_key(FILE *f, void *k)
{
	return PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
}

static int certs_write_x509(FILE *f, void *x)
{
	return PEM_write_X509(f, x);
}

int certs_make_selfsigned(const char *host, const char *crt, const char *key, int days, char *err,
                          size_t errlen)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext = NULL;
	char san[300];
	int rc = -1;

	if (!pk || !x) {
		snprintf(err, errlen, "cannot create a key");
		goto out;
	}
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
	X509_set_pubkey(x, pk);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1,
	                           0);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
	                           (const unsigned char *)CERTS_PLACEHOLDER_ORG, -1, -1, 0);
	X509_set_issuer_name(x, name);
	snprintf(san, sizeof(san), "DNS:%s", host);
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
	if (!ext || !X509_add_ext(x, ext, -1) || !X509_sign(x, pk, EVP_sha256())) {
		snprintf(err, errlen, "cannot sign the placeholder certificate");
		goto out;
	}
	if (certs_write_pem(key, 0600, certs_write_key, pk) < 0 ||
	    certs_write_pem(crt, 0644, certs_write_x509, x) < 0) {
		snprintf(err, errlen, "cannot write %s / %s: %s", crt, key, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	X509_EXTENSION_free(ext);
	X509_free(x);
	EVP_PKEY_free(pk);
	return rc;
}
