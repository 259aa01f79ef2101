/*
 * tests/unit/edge/certs.c - unit tests for edge/certs.c.
 *
 * Certificates are made with the openssl command line into a temporary
 * directory: a test CA, leaves signed by it (the .crt holds leaf + CA), each
 * with a distinct serial so a test can tell which pair the store serves.
 * Handshakes run in memory over a BIO pair.
 */
#include "edge/certs.h"
#include "common/log.h"
#include "tests/unit/unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static char root[] = "/tmp/relais-certs-XXXXXX";
static char dir[300];  /* the cert_dir */
static char work[300]; /* scratch files: CA, CSRs, pairs before they move in */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run a shell command (quiet); returns its exit status. */
static int sh(const char *fmt, ...)
{
	char cmd[4096], full[4200];
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	snprintf(full, sizeof(full), "( %s ) >/dev/null 2>&1", cmd);
	rc = system(full);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/*
 * Make work/<tag>.crt (leaf for dns, signed by the test CA, then the CA) and
 * work/<tag>.key (mode 0600).  days < 0 makes an expired certificate.
 */
static int mkpair(const char *tag, const char *dns, unsigned serial, int days)
{
	return sh("cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	          "-keyout %s.key -out %s.csr -subj /CN=%s && "
	          "printf 'subjectAltName=DNS:%s\\n' > %s.ext && "
	          "openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -set_serial %u -days %d "
	          "-extfile %s.ext -out %s.leaf && cat %s.leaf ca.crt > %s.crt && chmod 600 %s.key",
	          work, tag, tag, dns, dns, tag, tag, serial, days, tag, tag, tag, tag, tag);
}

/* Move work/<tag>.{crt,key} into cert_dir as <file>.{crt,key}, atomically each. */
static int install(const char *tag, const char *file)
{
	return sh("cd %s && cp -p %s.crt %s/.tmp.crt && cp -p %s.key %s/.tmp.key && "
	          "mv %s/.tmp.key %s/%s.key && mv %s/.tmp.crt %s/%s.crt",
	          work, tag, dir, tag, dir, dir, dir, file, dir, dir, file);
}

/* Serial number of the leaf in ctx, 0 when none. */
static unsigned long serial_of(SSL_CTX *ctx)
{
	X509 *x = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;

	return x ? (unsigned long)ASN1_INTEGER_get(X509_get0_serialNumber(x)) : 0;
}

static unsigned long lookup_serial(const char *sni)
{
	return serial_of(certs_lookup(sni));
}

/* ------------------------------------------------- in-memory handshakes */

struct hs_result {
	int ok;               /* both sides completed */
	int client_alert;     /* reason the client failed with, 0 if none */
	char alpn[16];        /* what the server picked */
	int version;          /* negotiated protocol version */
	unsigned long serial; /* the server certificate the client saw */
};

/*
 * Handshake a client (SNI sni or none, ALPN list, max version, TLS 1.2
 * cipher list or NULL) with a server SSL made from sctx.
 */
static struct hs_result handshake(SSL_CTX *sctx, const char *sni, const char *alpn, size_t alpnlen,
                                  int maxver, const char *ciphers)
{
	struct hs_result r;
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *c = NULL, *s = NULL;
	BIO *bc = NULL, *bs = NULL;
	int cdone = 0, sdone = 0, i;

	memset(&r, 0, sizeof(r));
	if (!cctx || !sctx)
		goto out;
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	if (maxver)
		SSL_CTX_set_max_proto_version(cctx, maxver);
	SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
	SSL_CTX_set_security_level(cctx, 0);
	if (ciphers)
		SSL_CTX_set_cipher_list(cctx, ciphers);
	c = SSL_new(cctx);
	s = SSL_new(sctx);
	if (!c || !s || !BIO_new_bio_pair(&bc, 0, &bs, 0))
		goto out;
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	if (sni)
		SSL_set_tlsext_host_name(c, sni);
	if (alpn)
		SSL_set_alpn_protos(c, (const unsigned char *)alpn, (unsigned)alpnlen);
	for (i = 0; i < 50 && !(cdone && sdone); i++) {
		int rc;

		if (!cdone) {
			rc = SSL_do_handshake(c);
			if (rc == 1) {
				cdone = 1;
			} else {
				int e = SSL_get_error(c, rc);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
					r.client_alert = ERR_GET_REASON(ERR_peek_last_error());
					break;
				}
			}
		}
		if (!sdone) {
			rc = SSL_do_handshake(s);
			if (rc == 1) {
				sdone = 1;
			} else {
				int e = SSL_get_error(s, rc);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					ERR_clear_error(); /* the client reports what it saw */
			}
		}
	}
	if (!r.client_alert && cdone && sdone) {
		const unsigned char *p = NULL;
		unsigned n = 0;
		X509 *peer;

		r.ok = 1;
		SSL_get0_alpn_selected(c, &p, &n);
		if (p && n < sizeof(r.alpn)) {
			memcpy(r.alpn, p, n);
			r.alpn[n] = '\0';
		}
		r.version = SSL_version(c);
		peer = SSL_get1_peer_certificate(c);
		if (peer) {
			r.serial = (unsigned long)ASN1_INTEGER_get(X509_get0_serialNumber(peer));
			X509_free(peer);
		}
	}
out:
	ERR_clear_error();
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	return r;
}

/* ---------------------------------------------------------------- tests */

static void test_no_dir(void)
{
	CHECK(certs_init(NULL) == 0);
	CHECK(certs_lookup("a.example.com") == NULL);
	CHECK(certs_reject_ctx() != NULL);
	CHECK(certs_count() == 0);
	CHECK(certs_dir() == NULL);
	certs_reload(); /* nothing to do */
	CHECK(certs_init("/nonexistent/relais-certs") == -1);
	CHECK(certs_reject_ctx() != NULL);
	CHECK(certs_lookup("a.example.com") == NULL);
	certs_free();
	CHECK(certs_reject_ctx() == NULL);
}

static void test_load_and_lookup(void)
{
	SSL_CTX *a;
	STACK_OF(X509) *chain = NULL;

	CHECK(mkpair("a1", "a.example.com", 0x1001, 30) == 0);
	CHECK(mkpair("w1", "*.example.com", 0x2001, 30) == 0);
	CHECK(mkpair("b1", "b.example.com", 0x3001, 30) == 0);
	CHECK(mkpair("h1", "home.example.org", 0x4001, 30) == 0);
	CHECK(install("a1", "a.example.com") == 0);
	CHECK(install("w1", "_wildcard.example.com") == 0);
	CHECK(install("b1", "b.example.com") == 0);
	CHECK(install("h1", "Home.Example.ORG") == 0); /* file names are case-insensitive */
	/* not pairs: ignored */
	CHECK(
	    sh("cd %s && echo hi > README && cp a.example.com.crt x.example.com.crt.tmp && "
	       "cp a.example.com.crt .hidden.example.com.crt && cp a.example.com.crt bad_name.crt",
	       dir) == 0);

	CHECK(certs_init(dir) == 0);
	CHECK(strcmp(certs_dir(), dir) == 0);
	CHECK(certs_count() == 4);

	/* exact */
	CHECK(lookup_serial("a.example.com") == 0x1001);
	CHECK(lookup_serial("b.example.com") == 0x3001);
	CHECK(lookup_serial("A.Example.COM") == 0x1001);
	CHECK(lookup_serial("a.example.com.") == 0x1001);
	CHECK(lookup_serial("home.example.org") == 0x4001);
	/* wildcard: exactly one label */
	CHECK(lookup_serial("x.example.com") == 0x2001);
	CHECK(lookup_serial("www.example.com") == 0x2001);
	CHECK(certs_lookup("x.y.example.com") == NULL);
	CHECK(certs_lookup("example.com") == NULL);
	CHECK(certs_lookup(".example.com") == NULL);
	CHECK(certs_lookup("*.example.com") == NULL);
	/* unknown */
	CHECK(certs_lookup("unknown.org") == NULL);
	CHECK(certs_lookup("x.example.org") == NULL);
	CHECK(certs_lookup("") == NULL);
	CHECK(certs_lookup(NULL) == NULL);
	CHECK(certs_lookup("a.example.com/x") == NULL);
	CHECK(lookup_serial("hidden.example.com") == 0x2001); /* only via the wildcard */
	CHECK(certs_covers("a.example.com") && certs_covers("z.example.com"));
	CHECK(!certs_covers("example.com") && !certs_covers("a.b.example.com"));

	/* the chain from the .crt is loaded after the leaf */
	a = certs_lookup("a.example.com");
	CHECK(a != NULL && SSL_CTX_get0_chain_certs(a, &chain) == 1);
	CHECK(chain != NULL && sk_X509_num(chain) == 1);
}

static void test_handshakes(void)
{
	struct hs_result r;
	SSL_CTX *a = certs_lookup("a.example.com");

	/* ALPN: http/1.1 chosen, h2 never */
	r = handshake(a, "a.example.com", "\x02h2\x08http/1.1", 12, 0, NULL);
	CHECK(r.ok && strcmp(r.alpn, "http/1.1") == 0);
	CHECK(r.version == TLS1_3_VERSION);
	CHECK(r.serial == 0x1001);
	/* offered, but no HTTP/1.x: no_application_protocol (RFC 7301 §3.2) */
	r = handshake(a, "a.example.com", "\x02h2", 3, 0, NULL);
	CHECK(!r.ok);
	r = handshake(a, "a.example.com", "\x02h2\x08http/1.0", 12, 0, NULL);
	CHECK(r.ok && strcmp(r.alpn, "http/1.0") == 0);
	r = handshake(a, "a.example.com", NULL, 0, 0, NULL);
	CHECK(r.ok && r.alpn[0] == '\0');
	/* TLS 1.2 with ECDHE + AEAD works; anything older or weaker does not */
	r = handshake(a, "a.example.com", NULL, 0, TLS1_2_VERSION, NULL);
	CHECK(r.ok && r.version == TLS1_2_VERSION);
	r = handshake(a, "a.example.com", NULL, 0, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305");
	CHECK(r.ok);
	r = handshake(a, "a.example.com", NULL, 0, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA");
	CHECK(!r.ok);
	r = handshake(a, "a.example.com", NULL, 0, TLS1_1_VERSION, NULL);
	CHECK(!r.ok);

	/* the reject context: fatal unrecognized_name, with or without SNI */
	r = handshake(certs_reject_ctx(), "unknown.org", NULL, 0, 0, NULL);
	CHECK(!r.ok && r.client_alert == SSL_R_TLSV1_UNRECOGNIZED_NAME);
	r = handshake(certs_reject_ctx(), NULL, NULL, 0, 0, NULL);
	CHECK(!r.ok && r.client_alert == SSL_R_TLSV1_UNRECOGNIZED_NAME);
	r = handshake(certs_reject_ctx(), "a.example.com", NULL, 0, TLS1_2_VERSION, NULL);
	CHECK(!r.ok && r.client_alert == SSL_R_TLSV1_UNRECOGNIZED_NAME);
}

static void test_replace(void)
{
	SSL *held;
	struct hs_result r;

	/* a connection that started with the old certificate keeps it */
	held = SSL_new(certs_lookup("a.example.com"));
	CHECK(held != NULL);

	CHECK(mkpair("a2", "a.example.com", 0x1002, 30) == 0);
	CHECK(install("a2", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);
	CHECK(serial_of(SSL_get_SSL_CTX(held)) == 0x1001);
	r = handshake(certs_lookup("a.example.com"), "a.example.com", NULL, 0, 0, NULL);
	CHECK(r.ok && r.serial == 0x1002);
	SSL_free(held);

	/* nothing changed: nothing reloaded, same context */
	{
		SSL_CTX *before = certs_lookup("a.example.com");

		certs_reload();
		CHECK(certs_lookup("a.example.com") == before);
	}
	CHECK(lookup_serial("b.example.com") == 0x3001);
	CHECK(lookup_serial("x.example.com") == 0x2001);
}

static void test_bad_pairs_keep_old(void)
{
	/* a key that does not match the certificate */
	CHECK(mkpair("a3", "a.example.com", 0x1003, 30) == 0);
	CHECK(sh("cd %s && cp -p b1.key a3.key", work) == 0);
	CHECK(install("a3", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);

	/* a truncated certificate file */
	CHECK(mkpair("a4", "a.example.com", 0x1004, 30) == 0);
	CHECK(sh("cd %s && head -c 300 a4.crt > a4.cut && mv a4.cut a4.crt", work) == 0);
	CHECK(install("a4", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);

	/* leaf fine but the chain cut short */
	CHECK(mkpair("a5", "a.example.com", 0x1005, 30) == 0);
	CHECK(sh("cd %s && head -n -3 a5.crt > a5.cut && mv a5.cut a5.crt", work) == 0);
	CHECK(install("a5", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);

	/* a truncated key */
	CHECK(mkpair("a6", "a.example.com", 0x1006, 30) == 0);
	CHECK(sh("cd %s && head -c 100 a6.key > a6.cut && mv a6.cut a6.key && chmod 600 a6.key",
	         work) == 0);
	CHECK(install("a6", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);

	/* expired */
	CHECK(mkpair("a7", "a.example.com", 0x1007, -1) == 0);
	CHECK(install("a7", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);

	/* private key readable by others */
	CHECK(mkpair("a8", "a.example.com", 0x1008, 30) == 0);
	CHECK(sh("chmod 644 %s/a8.key", work) == 0);
	CHECK(install("a8", "a.example.com") == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1002);
	/* ... fixed in place with chmod: picked up */
	CHECK(sh("chmod 600 %s/a.example.com.key", dir) == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1008);

	/* key file missing: the old pair stays */
	CHECK(sh("rm %s/a.example.com.key", dir) == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1008);
	CHECK(install("a8", "a.example.com") == 0);
	CHECK(sh("chmod 600 %s/a.example.com.key", dir) == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1008);
}

static void test_check_pair(void)
{
	char crt[400], key[400], other[400], err[512];

	snprintf(crt, sizeof(crt), "%s/p1.crt", work);
	snprintf(key, sizeof(key), "%s/p1.key", work);
	snprintf(other, sizeof(other), "%s/p2.key", work);
	CHECK(mkpair("p1", "p.example.com", 0x5001, 30) == 0);
	CHECK(mkpair("p2", "p.example.com", 0x5002, 30) == 0);
	CHECK(certs_check_pair("p.example.com", crt, key, err, sizeof(err)) == 0);
	/* a new key beside the old certificate (a crash between two renames) */
	CHECK(certs_check_pair("p.example.com", crt, other, err, sizeof(err)) == -1);
	CHECK(strstr(err, "does not match") != NULL);
	CHECK(certs_check_pair("p.example.com", crt, "/nonexistent.key", err, sizeof(err)) == -1);
	CHECK(strstr(err, "cannot read /nonexistent.key") != NULL);
	CHECK(sh("chmod 644 %s", key) == 0);
	CHECK(certs_check_pair("p.example.com", crt, key, err, sizeof(err)) == -1);
	CHECK(strstr(err, "accessible by others") != NULL);
	CHECK(mkpair("p3", "p.example.com", 0x5003, -1) == 0);
	snprintf(crt, sizeof(crt), "%s/p3.crt", work);
	snprintf(key, sizeof(key), "%s/p3.key", work);
	CHECK(certs_check_pair("p.example.com", crt, key, err, sizeof(err)) == -1);
	CHECK(strstr(err, "expired") != NULL);
}

static void test_selfsigned_files(void)
{
	char crt[400], key[400], err[512];
	struct stat st;
	mode_t old = umask(0);

	snprintf(crt, sizeof(crt), "%s/ph.crt", work);
	snprintf(key, sizeof(key), "%s/ph.key", work);
	/* an old key file readable by all is replaced by a 0600 one */
	CHECK(sh("mkdir -p %s && echo x > %s && chmod 644 %s", work, key, key) == 0);
	/* ... and so is a leftover temporary file under an old, guessable name */
	CHECK(sh("echo x > %s.tmp.%d && chmod 644 %s.tmp.%d", key, (int)getpid(), key,
	         (int)getpid()) == 0);
	CHECK(certs_make_selfsigned("ph.example.com", crt, key, 2, err, sizeof(err)) == 0);
	CHECK(sh("rm %s.tmp.%d", key, (int)getpid()) == 0);
	umask(old);
	CHECK(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(crt, &st) == 0 && (st.st_mode & 0777) == 0644);
	CHECK(certs_check_pair("ph.example.com", crt, key, err, sizeof(err)) == 0);
	/* no temporary file left behind */
	CHECK(sh("ls %s | grep -q '^ph\\..*\\.tmp'", work) != 0);
	/* a directory that cannot be written: an error, nothing created */
	CHECK(certs_make_selfsigned("ph.example.com", "/nonexistent/ph.crt", "/nonexistent/ph.key",
	                            2, err, sizeof(err)) == -1);
	CHECK(strstr(err, "cannot write") != NULL);
}

static void test_new_and_expired_hosts(void)
{
	/* a new pair appears */
	CHECK(mkpair("c1", "c.example.net", 0x5001, 30) == 0);
	CHECK(install("c1", "c.example.net") == 0);
	CHECK(certs_lookup("c.example.net") == NULL);
	certs_reload();
	CHECK(lookup_serial("c.example.net") == 0x5001);

	/* a new but expired pair never serves */
	CHECK(mkpair("e1", "e.example.net", 0x6001, -1) == 0);
	CHECK(install("e1", "e.example.net") == 0);
	certs_reload();
	CHECK(certs_lookup("e.example.net") == NULL);
	CHECK(!certs_covers("e.example.net"));
	/* a new wildcard pair */
	CHECK(mkpair("w2", "*.example.net", 0x7001, 30) == 0);
	CHECK(install("w2", "_wildcard.example.net") == 0);
	certs_reload();
	CHECK(lookup_serial("e.example.net") == 0x7001); /* via the wildcard now */
	CHECK(lookup_serial("c.example.net") == 0x5001); /* exact wins */
}

static void test_expiry(void)
{
	long now = (long)time(NULL), e = certs_expiry("b.example.com");

	CHECK(e > now + 29 * 86400 && e < now + 31 * 86400);
	CHECK(certs_expiry("q.example.com") > now); /* wildcard */
	CHECK(certs_expiry("unknown.org") == 0);
	CHECK(certs_expiry("x.y.example.com") == 0);
}

static void test_removal(void)
{
	CHECK(sh("rm %s/b.example.com.crt %s/b.example.com.key", dir, dir) == 0);
	certs_reload();
	/* now only the wildcard covers b */
	CHECK(lookup_serial("b.example.com") == 0x2001);
	CHECK(sh("rm %s/_wildcard.example.com.crt", dir) == 0);
	certs_reload();
	CHECK(certs_lookup("b.example.com") == NULL);
	CHECK(certs_lookup("x.example.com") == NULL);
	CHECK(lookup_serial("a.example.com") == 0x1008);
}

static void test_explicit_pairs(void)
{
	char err[256], crt[400], key[400], badkey[400];

	snprintf(crt, sizeof(crt), "%s/t1.crt", work);
	snprintf(key, sizeof(key), "%s/t1.key", work);
	snprintf(badkey, sizeof(badkey), "%s/b1.key", work);
	CHECK(mkpair("t1", "edge.example.com", 0x8001, 30) == 0);
	CHECK(certs_add("Edge.Example.COM", crt, key, err, sizeof(err)) == 0);
	CHECK(lookup_serial("edge.example.com") == 0x8001);

	/* a bad pair is refused with a reason, the old one stays */
	err[0] = '\0';
	CHECK(certs_add("edge.example.com", crt, badkey, err, sizeof(err)) == -1);
	CHECK(strstr(err, "does not match") != NULL);
	CHECK(lookup_serial("edge.example.com") == 0x8001);
	CHECK(certs_add("not a name", crt, key, err, sizeof(err)) == -1);
	CHECK(certs_add("new.example.com", crt, badkey, err, sizeof(err)) == -1);
	CHECK(certs_lookup("new.example.com") == NULL);

	/* explicit wins over the directory for the same name */
	CHECK(certs_add("a.example.com", crt, key, err, sizeof(err)) == 0);
	CHECK(lookup_serial("a.example.com") == 0x8001);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x8001);

	/* explicit files are watched too */
	CHECK(mkpair("t2", "edge.example.com", 0x8002, 30) == 0);
	CHECK(sh("cd %s && mv t2.key t1.key && mv t2.crt t1.crt", work) == 0);
	certs_reload();
	CHECK(lookup_serial("edge.example.com") == 0x8002);
	CHECK(certs_expiry("edge.example.com") > (long)time(NULL));

	/* the same name moved to other files */
	CHECK(mkpair("t3", "edge.example.com", 0x8003, 30) == 0);
	snprintf(crt, sizeof(crt), "%s/t3.crt", work);
	snprintf(key, sizeof(key), "%s/t3.key", work);
	CHECK(certs_add("edge.example.com", crt, key, err, sizeof(err)) == 0);
	CHECK(lookup_serial("edge.example.com") == 0x8003);
	CHECK(certs_add("edge.example.com", crt, NULL, err, sizeof(err)) == -1);
	CHECK(lookup_serial("edge.example.com") == 0x8003);
}

static void test_reinit_and_free(void)
{
	CHECK(certs_init(dir) == 0);
	CHECK(certs_lookup("edge.example.com") == NULL); /* explicit pairs start over */
	CHECK(lookup_serial("a.example.com") == 0x1008);
	CHECK(lookup_serial("c.example.net") == 0x5001);
	/* unreadable directory later: loaded certificates stay */
	CHECK(sh("mv %s %s.moved", dir, dir) == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1008);
	CHECK(sh("mv %s.moved %s", dir, dir) == 0);
	certs_reload();
	CHECK(lookup_serial("a.example.com") == 0x1008);
	certs_free();
	CHECK(certs_lookup("a.example.com") == NULL);
	CHECK(certs_reject_ctx() == NULL);
}

int main(void)
{
	log_init("certs-test", LOG_WARN);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/certs", root);
	snprintf(work, sizeof(work), "%s/work", root);
	if (sh("mkdir %s %s && cd %s && openssl req -x509 -newkey ec -pkeyopt "
	       "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 -subj "
	       "/CN=relais-test-CA",
	       dir, work, work) != 0) {
		fprintf(stderr, "cannot make the test CA with openssl\n");
		return 1;
	}

	RUN(test_no_dir);
	RUN(test_load_and_lookup);
	RUN(test_handshakes);
	RUN(test_replace);
	RUN(test_bad_pairs_keep_old);
	RUN(test_check_pair);
	RUN(test_selfsigned_files);
	RUN(test_new_and_expired_hosts);
	RUN(test_expiry);
	RUN(test_removal);
	RUN(test_explicit_pairs);
	RUN(test_reinit_and_free);

	certs_free();
	sh("rm -rf %s", root);
	UNIT_END();
}
