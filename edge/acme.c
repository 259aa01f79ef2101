/*
 * edge/acme.c - the built-in ACME client (RFC 8555) with HTTP-01 challenges.
 *
 * Threads: the event loop calls acme_want(), acme_challenge() and
 * acme_take_updated(), which only touch the shared state under acme.lock and
 * never block on I/O.  Everything else - the CA's directory, the account,
 * orders, polling, key generation, CSR, files - happens on the one worker
 * thread started by acme_start(), whose private state is struct acme_worker.
 *
 * One issuance (RFC 8555 §7.4): newOrder for one DNS name; for each
 * authorization that is not yet valid, publish the http-01 key authorization
 * (§8.1, §8.3), tell the CA to validate (POST {} to the challenge) and poll
 * the authorization until valid or invalid; then a fresh EC P-256 key, a CSR
 * naming the host in subjectAltName, finalize, poll the order, download the
 * chain, and replace <host>.key then <host>.crt atomically.
 *
 * Every request to the CA is a JWS (ES256) with a fresh nonce from the
 * previous response or newNonce; badNonce is retried (§6.5).  The worker
 * sleeps in poll() on two eventfds: wake (acme_want) and stop (acme_stop),
 * and the HTTPS client aborts on stop, so stopping never waits for the CA.
 */
#include "acme.h"
#include "certs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <libwebsockets.h>

#include "../common/config.h"
#include "../common/hostpat.h"
#include "../common/json.h"
#include "../common/log.h"
#include "acme_http.h"

#define ACME_HOUR_MS        (3600u * 1000u)
#define ACME_MAX_HOSTS      4096
#define ACME_COOL_MAX       256 /* dropped hosts whose wait is remembered */
#define ACME_MAX_CHALLENGES 16
#define ACME_JSON_TOKENS    4096 /* an order or authorization is a few dozen */
#define ACME_JWS_MAX        (64 * 1024)
#define ACME_NONCE_RETRIES  5
#define ACME_POLL_FIRST_MS  250    /* authorization / order polling: first wait */
#define ACME_POLL_MAX_MS    5000   /* ... doubling up to this */
#define ACME_POLL_LIMIT_MS  180000 /* give up on a validation or order after this */
#define ACME_ERR_MAX        2048
#define ACME_DIR_MAX        512 /* tls.cert_dir */
#define ACME_PATH_MAX       (ACME_DIR_MAX + 300)
#define ACME_ACCOUNT_FILE   "acme-account.key"
#define ACME_ERROR_PREFIX   "urn:ietf:params:acme:error:"
#define ACME_MIN_GAP_MS     (10u * 60u * 1000u) /* between two issuances for one host */
#define ACME_PAUSE_MIN_MS   (60u * 1000u)       /* rate limited: Retry-After clamped */
#define ACME_PAUSE_MAX_MS   (24u * 3600u * 1000u)
#define ACME_PAUSE_DEF_MS   (3600u * 1000u) /* ... or this without one */

struct acme_host {
	char name[256];
	uint64_t due;      /* CLOCK_MONOTONIC ms of the next look */
	unsigned failures; /* consecutive failed issuances */
	uint64_t issued;   /* CLOCK_MONOTONIC ms the CA last issued for it, 0 = not yet */
	char owner[64];    /* the agent whose route asked for it first, "" = the edge */
};

struct acme_chal {
	char token[ACME_TOKEN_MAX + 1]; /* "" = free slot */
	char keyauth[ACME_KEYAUTH_MAX];
};

/* Shared between the loop and the worker, under lock. */
static struct {
	pthread_mutex_t lock;
	int running;
	pthread_t thread;
	int stop_fd, wake_fd; /* eventfds: stop is never drained, wake is */
	struct lws_context *ctx;
	char *cert_dir, *directory, *email, *ca;
	uint32_t renew_days;
	uint32_t backoff_ms;
	uint32_t min_gap_ms; /* between two issuances for one host */
	unsigned generation; /* bumped when directory/ca/email change */
	struct acme_host *hosts;
	size_t nhosts;
	/* Hosts dropped (their route gone) while a failure was backed off,
	 * or soon after the CA issued for them: a route that comes back gets
	 * the rest of the wait, not a fresh order (an agent that reconnects
	 * in a loop would otherwise order once per connection). */
	struct acme_host cool[ACME_COOL_MAX];
	size_t ncool;
	struct acme_chal chals[ACME_MAX_CHALLENGES];
	atomic_int updated;
} acme = {.lock = PTHREAD_MUTEX_INITIALIZER, .stop_fd = -1, .wake_fd = -1};

/* The worker's own state. */
struct acme_worker {
	unsigned generation;
	char cert_dir[ACME_DIR_MAX];
	char directory[ACME_HTTP_URL_MAX];
	char email[256];
	char ca[ACME_PATH_MAX];
	uint32_t renew_days;
	int http_ready;
	struct acme_http http;
	EVP_PKEY *account;
	char jwk[256];
	char thumb[44];
	char kid[ACME_HTTP_URL_MAX]; /* account URL, "" until registered */
	char nonce[ACME_HTTP_NONCE_MAX];
	int have_dir;
	char new_nonce[ACME_HTTP_URL_MAX], new_account[ACME_HTTP_URL_MAX];
	char new_order[ACME_HTTP_URL_MAX];
	uint64_t pause_ms;     /* set by the last failure when the CA limits us */
	uint64_t paused_until; /* CLOCK_MONOTONIC ms: no request to the CA before */
	int account_stale;     /* the CA does not know the account: newAccount again */
	struct json_tok toks[ACME_JSON_TOKENS];
};

/* An error message into err[0..errlen); long messages are cut, never overflow. */
static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- pure helpers ---------------------------------------------------------- */

int acme_b64url(const void *in, size_t len, char *out, size_t cap)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const uint8_t *p = in;
	size_t need = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0), o = 0, i;

	if (need >= cap || need > INT_MAX)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (len - i == 1) {
		out[o++] = tab[p[i] >> 2];
		out[o++] = tab[(p[i] & 3) << 4];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];

		out[o++] = tab[v >> 10];
		out[o++] = tab[(v >> 4) & 63];
		out[o++] = tab[(v & 15) << 2];
	}
	out[o] = '\0';
	return (int)o;
}

static int b64url_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int acme_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	size_t o = 0;
	int bits = 0;

	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_val(in[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* the unused low bits of the last character must be zero (canonical form) */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return o > INT_MAX ? -1 : (int)o;
}

/* 1 when key is an EC key on P-256. */
static int is_p256(EVP_PKEY *key)
{
	char group[64];
	size_t glen = 0;

	if (key == NULL || !EVP_PKEY_is_a(key, "EC"))
		return 0;
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	                                    &glen))
		return 0;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

int acme_jwk(EVP_PKEY *key, char *out, size_t cap)
{
	BIGNUM *x = NULL, *y = NULL;
	uint8_t xb[32], yb[32];
	char xs[44], ys[44];
	int n = -1;

	if (!is_p256(key) || !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
	    !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y))
		goto out;
	/* RFC 7518 §6.2.1.2: coordinates are exactly 32 bytes, zero padded */
	if (BN_bn2binpad(x, xb, 32) != 32 || BN_bn2binpad(y, yb, 32) != 32)
		goto out;
	acme_b64url(xb, 32, xs, sizeof(xs));
	acme_b64url(yb, 32, ys, sizeof(ys));
	/* RFC 7638 §3.2: required members only, lexicographic order, no whitespace */
	n = snprintf(out, cap, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", xs,
	             ys);
	if (n < 0 || (size_t)n >= cap)
		n = -1;
out:
	BN_free(x);
	BN_free(y);
	return n;
}

int acme_thumbprint(const char *jwk, char out[44])
{
	uint8_t md[32];
	unsigned int mdlen = 0;

	if (!EVP_Digest(jwk, strlen(jwk), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -1;
	return acme_b64url(md, 32, out, 44) == 43 ? 0 : -1;
}

int acme_es256(EVP_PKEY *key, const void *msg, size_t len, uint8_t sig[64])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char der[128];
	const unsigned char *p = der;
	size_t dlen = sizeof(der);
	ECDSA_SIG *es = NULL;
	const BIGNUM *r, *s;
	int rc = -1;

	if (md == NULL || !is_p256(key))
		goto out;
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, der, &dlen, msg, len) != 1)
		goto out;
	/* OpenSSL produces DER (SEQUENCE of two INTEGERs); JWS wants R || S. */
	es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
	if (es == NULL)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
		goto out;
	rc = 0;
out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return rc;
}

/* A bounded string builder: the first overflow marks it failed. */
struct sbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->failed || n >= b->cap - b->len) {
		b->failed = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* s as a JSON string, with quotes (RFC 8259 §7). */
static void sb_json(struct sbuf *b, const char *s)
{
	sb_add(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_add(b, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			sb_add(b, esc, 6);
		} else {
			sb_add(b, (const char *)&c, 1);
		}
	}
	sb_add(b, "\"", 1);
}

/* base64url of data appended to b. */
static void sb_b64(struct sbuf *b, const void *data, size_t len)
{
	int n;

	if (b->failed)
		return;
	n = acme_b64url(data, len, b->p + b->len, b->cap - b->len);
	if (n < 0)
		b->failed = 1;
	else
		b->len += (size_t)n;
}

char *acme_jws(EVP_PKEY *key, const char *jwk, const char *kid, const char *nonce, const char *url,
               const char *payload)
{
	struct sbuf prot = {NULL, 0, 4096, 0}, out = {NULL, 0, ACME_JWS_MAX, 0};
	size_t signed_from;
	uint8_t sig[64];

	prot.p = malloc(prot.cap);
	out.p = malloc(out.cap);
	if (prot.p == NULL || out.p == NULL)
		goto fail;
	sb_str(&prot, "{\"alg\":\"ES256\",");
	if (jwk != NULL) {
		sb_str(&prot, "\"jwk\":");
		sb_str(&prot, jwk);
	} else {
		sb_str(&prot, "\"kid\":");
		sb_json(&prot, kid != NULL ? kid : "");
	}
	sb_str(&prot, ",\"nonce\":");
	sb_json(&prot, nonce);
	sb_str(&prot, ",\"url\":");
	sb_json(&prot, url);
	sb_str(&prot, "}");

	/* RFC 7515 §5.1: the signing input is b64(protected) "." b64(payload) */
	sb_str(&out, "{\"protected\":\"");
	signed_from = out.len;
	sb_b64(&out, prot.p, prot.len);
	sb_str(&out, ".");
	if (payload != NULL)
		sb_b64(&out, payload, strlen(payload));
	if (prot.failed || out.failed ||
	    acme_es256(key, out.p + signed_from, out.len - signed_from, sig) < 0)
		goto fail;
	/* turn the "." back into the JSON member boundary */
	out.len = signed_from;
	out.p[out.len] = '\0';
	sb_b64(&out, prot.p, prot.len);
	sb_str(&out, "\",\"payload\":\"");
	if (payload != NULL)
		sb_b64(&out, payload, strlen(payload));
	sb_str(&out, "\",\"signature\":\"");
	sb_b64(&out, sig, sizeof(sig));
	sb_str(&out, "\"}");
	if (out.failed)
		goto fail;
	free(prot.p);
	return out.p;
fail:
	free(prot.p);
	free(out.p);
	return NULL;
}

time_t acme_renew_at(time_t not_before, time_t not_after, uint32_t renew_days)
{
	time_t before = not_after - (time_t)renew_days * 86400;
	time_t life = not_after > not_before ? not_after - not_before : 0;
	time_t two_thirds = not_before + life / 3 * 2 + (life % 3) * 2 / 3;

	return before > two_thirds ? before : two_thirds;
}

uint32_t acme_backoff_ms(uint32_t base_ms, unsigned failures)
{
	uint64_t d = base_ms ? base_ms : 1;

	for (unsigned i = 1; i < failures && d < ACME_BACKOFF_MAX_MS; i++)
		d *= 2;
	return d > ACME_BACKOFF_MAX_MS ? ACME_BACKOFF_MAX_MS : (uint32_t)d;
}

uint64_t acme_rate_pause_ms(int status, const char *type, uint32_t retry_after)
{
	uint64_t ms = (uint64_t)retry_after * 1000u;

	/* RFC 8555 §6.6: rateLimited, with Retry-After; RFC 9110 §15.5.30, §15.6.4 */
	if (status != 429 && status != 503 &&
	    (type == NULL || strcmp(type, ACME_ERROR_PREFIX "rateLimited") != 0))
		return 0;
	if (retry_after == 0)
		return ACME_PAUSE_DEF_MS;
	if (ms < ACME_PAUSE_MIN_MS)
		return ACME_PAUSE_MIN_MS;
	return ms > ACME_PAUSE_MAX_MS ? ACME_PAUSE_MAX_MS : ms;
}

/* An object's status for a message: "" when the CA sent none we could read. */
static const char *status_text(const char *status)
{
	return status[0] ? status : "without a readable status";
}

/* "detail (type)" from the problem object at token obj of doc. */
static int problem_from(const struct json_doc *d, int obj, char *out, size_t cap)
{
	char type[256], detail[512];
	const char *t = type;

	if (json_type(d, obj) != JSON_OBJECT)
		return -1;
	if (json_get_string(d, obj, "type", type, sizeof(type)) < 0)
		snprintf(type, sizeof(type), "unknown problem");
	if (json_get_string(d, obj, "detail", detail, sizeof(detail)) < 0)
		detail[0] = '\0';
	if (strncmp(type, ACME_ERROR_PREFIX, strlen(ACME_ERROR_PREFIX)) == 0)
		t = type + strlen(ACME_ERROR_PREFIX);
	/* the CA's words go into our log: keep them on one printable line */
	for (char *p = detail; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	if (detail[0] != '\0')
		snprintf(out, cap, "%s (%s)", detail, t);
	else
		snprintf(out, cap, "%s", t);
	return 0;
}

int acme_problem(const char *body, size_t len, char *out, size_t cap)
{
	struct json_tok toks[64];
	struct json_doc d;

	if (json_parse(&d, body, len, toks, sizeof(toks) / sizeof(toks[0]), NULL) < 0 ||
	    json_get(&d, 0, "type") < 0)
		return -1;
	return problem_from(&d, 0, out, cap);
}

/* ---- shared state ---------------------------------------------------------------- */

static void wake(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("acme: cannot wake the worker: %s", strerror(errno));
}

static struct acme_host *host_find(const char *name)
{
	for (size_t i = 0; i < acme.nhosts; i++)
		if (strcmp(acme.hosts[i].name, name) == 0)
			return &acme.hosts[i];
	return NULL;
}

/* Record when to look at host next, and when the CA last issued for it
 * (issued 0: unchanged); worker side. */
static void host_schedule(const char *name, uint64_t due, unsigned failures, uint64_t issued)
{
	struct acme_host *h;

	pthread_mutex_lock(&acme.lock);
	h = host_find(name);
	if (h != NULL) {
		h->due = due;
		h->failures = failures;
		if (issued != 0)
			h->issued = issued;
	}
	pthread_mutex_unlock(&acme.lock);
}

/* acme_want() counting against owner (NULL: the edge itself, no cap). */
/* 1 when h is still waiting: a failure backed off, or an issuance too
 * recent for another (under lock). */
static int host_waiting(const struct acme_host *h, uint64_t now)
{
	return (h->failures != 0 && h->due > now) ||
	       (h->issued != 0 && now - h->issued < acme.min_gap_ms);
}

/* Remember h's wait (under lock): the table forgets waits that ended, and
 * when full the one that ends first. */
static void cool_put(const struct acme_host *h, uint64_t now)
{
	struct acme_host *c = NULL;

	for (size_t i = 0; i < acme.ncool;) {
		const struct acme_host *o = &acme.cool[i];

		if (!host_waiting(o, now) || strcmp(o->name, h->name) == 0)
			acme.cool[i] = acme.cool[--acme.ncool];
		else
			i++;
	}
	if (acme.ncool < ACME_COOL_MAX) {
		c = &acme.cool[acme.ncool++];
	} else {
		c = &acme.cool[0];
		for (size_t i = 1; i < acme.ncool; i++)
			if (acme.cool[i].due < c->due)
				c = &acme.cool[i];
	}
	*c = *h;
}

/* A new entry h takes the wait remembered for its name, if any (under lock). */
static void cool_take(struct acme_host *h)
{
	for (size_t i = 0; i < acme.ncool; i++)
		if (strcmp(acme.cool[i].name, h->name) == 0) {
			h->due = acme.cool[i].due;
			h->issued = acme.cool[i].issued;
			h->failures = acme.cool[i].failures;
			acme.cool[i] = acme.cool[--acme.ncool];
			return;
		}
}

static int want(const char *host, const char *owner, uint32_t cap)
{
	char name[256];
	struct acme_host *h;
	const char *last;
	size_t n = strlen(host), owned = 0;

	if (n == 0 || n >= sizeof(name)) {
		log_warn("acme: refusing a certificate for an empty or overlong host name");
		return -1;
	}
	memcpy(name, host, n + 1);
	host_normalize(name);
	last = strrchr(name, '.');
	last = last != NULL ? last + 1 : name;
	if (name[0] == '*') {
		log_warn("acme: %s: wildcard certificates need DNS-01; put one in the certificate "
		         "directory with an external client",
		         name);
		return -1;
	}
	if (!host_valid(name) || strspn(last, "0123456789") == strlen(last)) {
		log_warn("acme: refusing a certificate for '%s': not a DNS name", name);
		return -1;
	}
	pthread_mutex_lock(&acme.lock);
	if (!acme.running) {
		pthread_mutex_unlock(&acme.lock);
		return -1;
	}
	h = host_find(name);
	if (h == NULL) {
		struct acme_host *nh;

		if (owner != NULL) {
			for (size_t i = 0; i < acme.nhosts; i++)
				if (strcmp(acme.hosts[i].owner, owner) == 0)
					owned++;
			if (owned >= cap) {
				pthread_mutex_unlock(&acme.lock);
				return 1;
			}
		}
		if (acme.nhosts >= ACME_MAX_HOSTS) {
			pthread_mutex_unlock(&acme.lock);
			log_warn("acme: %s: more than %d managed hosts; ignored", name,
			         ACME_MAX_HOSTS);
			return -1;
		}
		nh = realloc(acme.hosts, (acme.nhosts + 1) * sizeof(*nh));
		if (nh == NULL) {
			pthread_mutex_unlock(&acme.lock);
			log_error("acme: %s: out of memory", name);
			return -1;
		}
		acme.hosts = nh;
		h = &acme.hosts[acme.nhosts++];
		memset(h, 0, sizeof(*h));
		memcpy(h->name, name, strlen(name) + 1);
		snprintf(h->owner, sizeof(h->owner), "%s", owner != NULL ? owner : "");
		cool_take(h);
	}
	/* Look now, unless a failure is being backed off: routes that keep asking
	 * must not make us hammer the CA. */
	if (h->failures == 0)
		h->due = 0;
	pthread_mutex_unlock(&acme.lock);
	wake(acme.wake_fd);
	return 0;
}

void acme_want(const char *host)
{
	(void)want(host, NULL, 0);
}

int acme_want_for(const char *host, const char *owner, uint32_t cap)
{
	return want(host, owner != NULL ? owner : "", cap);
}

/* 1 when host has never had a certificate file in cert_dir (under lock). */
static int never_issued(const char *host)
{
	char path[ACME_PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s.crt", acme.cert_dir, host);
	return access(path, F_OK) != 0 && errno == ENOENT;
}

static void host_drop(size_t i)
{
	uint64_t now = now_ms();

	log_debug("acme: %s: no route needs it any more: not managed", acme.hosts[i].name);
	if (host_waiting(&acme.hosts[i], now))
		cool_put(&acme.hosts[i], now);
	acme.hosts[i] = acme.hosts[--acme.nhosts];
}

void acme_forget(const char *host)
{
	char name[256];

	if (strlen(host) >= sizeof(name))
		return;
	snprintf(name, sizeof(name), "%s", host);
	host_normalize(name);
	pthread_mutex_lock(&acme.lock);
	for (size_t i = 0; acme.running && i < acme.nhosts; i++)
		if (strcmp(acme.hosts[i].name, name) == 0) {
			if (acme.hosts[i].owner[0] != '\0' && never_issued(name))
				host_drop(i);
			break;
		}
	pthread_mutex_unlock(&acme.lock);
}

size_t acme_prune(int (*needed)(const char *host, void *arg), void *arg)
{
	size_t dropped = 0;

	pthread_mutex_lock(&acme.lock);
	for (size_t i = 0; acme.running && i < acme.nhosts;) {
		struct acme_host *h = &acme.hosts[i];

		if (h->owner[0] != '\0' && !needed(h->name, arg) && never_issued(h->name)) {
			host_drop(i);
			dropped++;
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&acme.lock);
	return dropped;
}

int acme_managed(const char *host)
{
	int found;

	pthread_mutex_lock(&acme.lock);
	found = acme.running && host_find(host) != NULL;
	pthread_mutex_unlock(&acme.lock);
	return found;
}

int acme_challenge(const char *token, char *out, size_t cap)
{
	int found = 0;

	if (token == NULL || token[0] == '\0' || strlen(token) > ACME_TOKEN_MAX)
		return 0;
	pthread_mutex_lock(&acme.lock);
	for (size_t i = 0; i < ACME_MAX_CHALLENGES; i++) {
		if (strcmp(acme.chals[i].token, token) == 0) {
			if (strlen(acme.chals[i].keyauth) < cap) {
				memcpy(out, acme.chals[i].keyauth,
				       strlen(acme.chals[i].keyauth) + 1);
				found = 1;
			}
			break;
		}
	}
	pthread_mutex_unlock(&acme.lock);
	return found;
}

static int chal_publish(const char *token, const char *keyauth)
{
	int rc = -1;

	pthread_mutex_lock(&acme.lock);
	for (size_t i = 0; i < ACME_MAX_CHALLENGES; i++) {
		if (acme.chals[i].token[0] == '\0' || strcmp(acme.chals[i].token, token) == 0) {
			snprintf(acme.chals[i].token, sizeof(acme.chals[i].token), "%s", token);
			snprintf(acme.chals[i].keyauth, sizeof(acme.chals[i].keyauth), "%s",
			         keyauth);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&acme.lock);
	return rc;
}

static void chal_remove(const char *token)
{
	pthread_mutex_lock(&acme.lock);
	for (size_t i = 0; i < ACME_MAX_CHALLENGES; i++)
		if (strcmp(acme.chals[i].token, token) == 0)
			memset(&acme.chals[i], 0, sizeof(acme.chals[i]));
	pthread_mutex_unlock(&acme.lock);
}

int acme_take_updated(void)
{
	return atomic_exchange(&acme.updated, 0);
}

/* ---- files ------------------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Write data to a new temporary file in dir (mode 0600 from mkostemp, then
 * mode), flushed to disk.  The name starts with '.' and does not end in
 * .crt/.key, so the certificate store never picks up a half-written file.
 */
static int write_temp(const char *dir, const char *name, const void *data, size_t len, mode_t mode,
                      char *tmp, size_t tmpcap, char *err, size_t errlen)
{
	int fd;

	if ((size_t)snprintf(tmp, tmpcap, "%s/.%s.XXXXXX", dir, name) >= tmpcap) {
		errf(err, errlen, "path too long in %s", dir);
		return -1;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		errf(err, errlen, "cannot create a file in %s: %s", dir, strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* PEM (PKCS#8) of key in a malloc'd buffer the caller wipes and frees. */
static char *key_pem(EVP_PKEY *key, size_t *len)
{
	BIO *b = BIO_new(BIO_s_secmem()); /* wiped when freed */
	char *data, *out = NULL;
	long n;

	if (b == NULL)
		return NULL;
	if (PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) {
		n = BIO_get_mem_data(b, &data);
		out = n > 0 ? malloc((size_t)n) : NULL;
		if (out != NULL) {
			memcpy(out, data, (size_t)n);
			*len = (size_t)n;
		}
	}
	BIO_free_all(b);
	return out;
}

/*
 * Load a private key file.  strict (our account key): no symlink, and not
 * readable by group or others.  Certificate keys are only read to check
 * that they match; who may read them is the certificate store's business.
 */
static EVP_PKEY *key_load(const char *path, int strict, char *err, size_t errlen)
{
	struct stat st;
	EVP_PKEY *key;
	FILE *f;
	int fd = open(path, O_RDONLY | O_CLOEXEC | (strict ? O_NOFOLLOW : 0));

	if (fd < 0) {
		errf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		errf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (strict && (st.st_mode & 077)) {
		errf(err, errlen, "%s is accessible by group or others; chmod 600 it", path);
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (f == NULL) {
		errf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL)
		errf(err, errlen, "%s: not a PEM private key", path);
	ERR_clear_error();
	return key;
}

/* "2025-06-01T12:00:00Z" */
static const char *fmt_time(time_t t, char *buf, size_t cap)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static const char *fmt_delay(uint64_t ms, char *buf, size_t cap)
{
	if (ms < 60000)
		snprintf(buf, cap, "%llu s", (unsigned long long)((ms + 999) / 1000));
	else if (ms < 2 * 3600000ull)
		snprintf(buf, cap, "%llu min", (unsigned long long)(ms / 60000));
	else
		snprintf(buf, cap, "%llu h", (unsigned long long)(ms / 3600000));
	return buf;
}

static int asn1_time(const ASN1_TIME *a, time_t *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
		return -1;
	*t = timegm(&tm);
	return 0;
}

/*
 * Is a usable certificate for host in cert_dir?  Returns 1 with *renew set
 * (still good), 0 with *why set (missing, broken or due: request one).
 */
static int cert_check(const struct acme_worker *w, const char *host, time_t *renew, time_t *expires,
                      char *why, size_t whylen)
{
	char path[ACME_PATH_MAX], e[256], t1[32];
	struct stat st;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	time_t nb, na;
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/%s.crt", w->cert_dir, host);
	f = fopen(path, "re");
	if (f == NULL) {
		errf(why, whylen, "%s", errno == ENOENT ? "none yet" : strerror(errno));
		return 0;
	}
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (cert == NULL) {
		errf(why, whylen, "%s is not a PEM certificate", path);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s.key", w->cert_dir, host);
	/* the certificate store skips such a key (edge/certs.c): replace it */
	if (stat(path, &st) == 0 && (st.st_mode & 007)) {
		errf(why, whylen, "%s is readable by others", path);
		goto out;
	}
	key = key_load(path, 0, e, sizeof(e));
	if (key == NULL) {
		errf(why, whylen, "%s", e);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		errf(why, whylen, "the certificate does not match its key");
		goto out;
	}
	if (X509_check_host(cert, host, 0, 0, NULL) != 1) {
		errf(why, whylen, "the certificate does not name %s", host);
		goto out;
	}
	/* The edge's own placeholder for the agent endpoint is only a stand-in
	 * (edge/certs.c marks it with this organization): replace it. */
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_organizationName, e,
	                              sizeof(e)) > 0 &&
	    strcmp(e, CERTS_PLACEHOLDER_ORG) == 0) {
		errf(why, whylen, "self-signed placeholder");
		goto out;
	}
	if (asn1_time(X509_get0_notBefore(cert), &nb) < 0 ||
	    asn1_time(X509_get0_notAfter(cert), &na) < 0) {
		errf(why, whylen, "the certificate has unreadable dates");
		goto out;
	}
	*renew = acme_renew_at(nb, na, w->renew_days);
	*expires = na;
	if (time(NULL) >= *renew) {
		errf(why, whylen, "renewal due, expires %s", fmt_time(na, t1, sizeof(t1)));
		goto out;
	}
	rc = 1;
out:
	ERR_clear_error();
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

/* ---- talking to the CA ---------------------------------------------------------- */

/* Sleep ms, or return -1 at once when stopping. */
static int acme_sleep(uint64_t ms)
{
	struct pollfd p = {acme.stop_fd, POLLIN, 0};

	return poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms) > 0 ? -1 : 0;
}

static int worker_http(struct acme_worker *w, char *err, size_t errlen)
{
	if (w->http_ready)
		return 0;
	if (acme_http_init(&w->http, w->ca[0] ? w->ca : NULL, acme.stop_fd, err, errlen) < 0)
		return -1;
	w->http_ready = 1;
	return 0;
}

/* Parse a JSON body into w->toks; 0 or -1 with err. */
static int parse_body(struct acme_worker *w, const struct acme_http_res *res, struct json_doc *d,
                      const char *what, char *err, size_t errlen)
{
	const char *perr = "?";

	if (json_parse(d, res->body, res->body_len, w->toks, ACME_JSON_TOKENS, &perr) < 0 ||
	    json_type(d, 0) != JSON_OBJECT) {
		errf(err, errlen, "%s: the CA sent a malformed answer (%s)", what,
		     json_type(d, 0) == JSON_NONE ? perr : "not an object");
		return -1;
	}
	return 0;
}

/* err = "what: HTTP status: problem" for a failed response. */
static void http_error(const struct acme_http_res *res, const char *what, char *err, size_t errlen)
{
	char prob[768];

	if (res->body != NULL && acme_problem(res->body, res->body_len, prob, sizeof(prob)) == 0)
		errf(err, errlen, "%s: the CA said: %s", what, prob);
	else
		errf(err, errlen, "%s: HTTP %d from the CA", what, res->status);
}

/*
 * Take note of an error answer: a rate limit pauses the whole worker
 * (w->pause_ms, applied by acme_process), and an account the CA does not
 * know (any more) is registered again on the next attempt.  Other failures
 * keep the directory and the account: re-registering on every failure
 * would only add to the requests the CA counts.
 */
static void note_error(struct acme_worker *w, const struct acme_http_res *res)
{
	char type[128] = "";
	struct json_doc d;
	uint64_t pause;

	if (res->body != NULL &&
	    json_parse(&d, res->body, res->body_len, w->toks, ACME_JSON_TOKENS, NULL) > 0 &&
	    json_type(&d, 0) == JSON_OBJECT)
		json_get_string(&d, 0, "type", type, sizeof(type));
	pause = acme_rate_pause_ms(res->status, type, res->retry_after);
	if (pause > w->pause_ms)
		w->pause_ms = pause;
	if (strcmp(type, ACME_ERROR_PREFIX "accountDoesNotExist") == 0 ||
	    strcmp(type, ACME_ERROR_PREFIX "unauthorized") == 0)
		w->account_stale = 1;
	/* the CA moved an endpoint: read the directory again */
	if (res->status == 404)
		w->have_dir = 0;
}

static int acme_directory(struct acme_worker *w, char *err, size_t errlen)
{
	struct acme_http_res res;
	struct json_doc d;
	char tos[ACME_HTTP_URL_MAX];
	int meta, rc = -1;

	if (w->have_dir)
		return 0;
	if (acme_http_request(&w->http, "GET", w->directory, NULL, NULL, 0, &res, err, errlen) < 0)
		return -1;
	if (res.status != 200) {
		note_error(w, &res);
		http_error(&res, "directory", err, errlen);
		goto out;
	}
	if (parse_body(w, &res, &d, "directory", err, errlen) < 0)
		goto out;
	if (json_get_string(&d, 0, "newNonce", w->new_nonce, sizeof(w->new_nonce)) < 0 ||
	    json_get_string(&d, 0, "newAccount", w->new_account, sizeof(w->new_account)) < 0 ||
	    json_get_string(&d, 0, "newOrder", w->new_order, sizeof(w->new_order)) < 0) {
		errf(err, errlen, "directory %s lacks newNonce, newAccount or newOrder",
		     w->directory);
		goto out;
	}
	meta = json_get(&d, 0, "meta");
	if (json_get_string(&d, meta, "termsOfService", tos, sizeof(tos)) > 0)
		log_info("acme: terms of service of %s: %s (accepted in edge.yaml)", w->directory,
		         tos);
	w->have_dir = 1;
	rc = 0;
out:
	acme_http_res_free(&res);
	return rc;
}

static int acme_new_nonce(struct acme_worker *w, char *err, size_t errlen)
{
	struct acme_http_res res;
	int rc = -1;

	if (acme_http_request(&w->http, "HEAD", w->new_nonce, NULL, NULL, 0, &res, err, errlen) < 0)
		return -1;
	if (res.nonce[0] == '\0') {
		note_error(w, &res);
		errf(err, errlen, "newNonce: no Replay-Nonce from the CA (HTTP %d)", res.status);
	} else {
		memcpy(w->nonce, res.nonce, sizeof(w->nonce));
		rc = 0;
	}
	acme_http_res_free(&res);
	return rc;
}

/*
 * POST a JWS with payload (NULL: POST-as-GET) to url; on a 2xx answer fill
 * *res (caller frees) and return 0.  Otherwise -1 with err naming what and
 * the CA's problem document.  badNonce is retried with the fresh nonce (§6.5).
 */
static int acme_post(struct acme_worker *w, const char *url, const char *payload,
                     struct acme_http_res *res, const char *what, char *err, size_t errlen)
{
	for (int attempt = 0;; attempt++) {
		struct acme_http_res r;
		char *jws, e[ACME_ERR_MAX];
		int bad_nonce = 0;

		if (w->nonce[0] == '\0' && acme_new_nonce(w, err, errlen) < 0)
			return -1;
		jws =
		    acme_jws(w->account, w->kid[0] ? NULL : w->jwk, w->kid, w->nonce, url, payload);
		w->nonce[0] = '\0'; /* a nonce is good for one request */
		if (jws == NULL) {
			errf(err, errlen, "%s: cannot sign the request", what);
			return -1;
		}
		if (acme_http_request(&w->http, "POST", url, "application/jose+json", jws,
		                      strlen(jws), &r, e, sizeof(e)) < 0) {
			free(jws);
			errf(err, errlen, "%s: %s", what, e);
			return -1;
		}
		free(jws);
		if (r.nonce[0] != '\0')
			memcpy(w->nonce, r.nonce, sizeof(w->nonce));
		if (r.status >= 200 && r.status < 300) {
			*res = r;
			return 0;
		}
		if (r.status == 400 && r.body != NULL) {
			struct json_doc d;

			if (json_parse(&d, r.body, r.body_len, w->toks, ACME_JSON_TOKENS, NULL) >
			        0 &&
			    json_streq(&d, json_get(&d, 0, "type"), ACME_ERROR_PREFIX "badNonce"))
				bad_nonce = 1;
		}
		if (bad_nonce && attempt < ACME_NONCE_RETRIES) {
			log_debug("acme: %s: badNonce, retrying with a fresh nonce", what);
			acme_http_res_free(&r);
			continue;
		}
		note_error(w, &r);
		http_error(&r, what, err, errlen);
		acme_http_res_free(&r);
		return -1;
	}
}

/* Load the account key, or create it once (O_EXCL semantics through link()). */
static int account_key(struct acme_worker *w, char *err, size_t errlen)
{
	char path[ACME_PATH_MAX], tmp[ACME_PATH_MAX];
	EVP_PKEY *key = NULL;
	char *pem = NULL;
	size_t len = 0;

	if (w->account != NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", w->cert_dir, ACME_ACCOUNT_FILE);
	if (access(path, F_OK) != 0) {
		key = EVP_EC_gen("P-256");
		pem = key != NULL ? key_pem(key, &len) : NULL;
		EVP_PKEY_free(key);
		key = NULL;
		if (pem == NULL) {
			errf(err, errlen, "cannot generate the account key");
			return -1;
		}
		if (write_temp(w->cert_dir, ACME_ACCOUNT_FILE, pem, len, 0600, tmp, sizeof(tmp),
		               err, errlen) < 0) {
			OPENSSL_clear_free(pem, len);
			return -1;
		}
		OPENSSL_clear_free(pem, len);
		/* link() fails if another process made one meanwhile: then use theirs */
		if (link(tmp, path) < 0 && errno != EEXIST) {
			errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
			unlink(tmp);
			return -1;
		}
		unlink(tmp);
		fsync_dir(w->cert_dir);
		log_info("acme: created the account key %s", path);
	}
	key = key_load(path, 1, err, errlen);
	if (key == NULL)
		return -1;
	if (!is_p256(key)) {
		errf(err, errlen, "%s is not an EC P-256 key", path);
		EVP_PKEY_free(key);
		return -1;
	}
	if (acme_jwk(key, w->jwk, sizeof(w->jwk)) < 0 || acme_thumbprint(w->jwk, w->thumb) < 0) {
		errf(err, errlen, "cannot compute the JWK of %s", path);
		EVP_PKEY_free(key);
		return -1;
	}
	w->account = key;
	return 0;
}

/* Directory, account key and account URL (newAccount, §7.3). */
static int acme_account(struct acme_worker *w, char *err, size_t errlen)
{
	struct acme_http_res res;
	struct sbuf p;
	char payload[512];

	if (worker_http(w, err, errlen) < 0 || account_key(w, err, errlen) < 0 ||
	    acme_directory(w, err, errlen) < 0)
		return -1;
	if (w->kid[0] != '\0')
		return 0;
	p = (struct sbuf){payload, 0, sizeof(payload), 0};
	sb_str(&p, "{\"termsOfServiceAgreed\":true");
	if (w->email[0] != '\0') {
		char mailto[300];

		snprintf(mailto, sizeof(mailto), "mailto:%s", w->email);
		sb_str(&p, ",\"contact\":[");
		sb_json(&p, mailto);
		sb_str(&p, "]");
	}
	sb_str(&p, "}");
	if (p.failed) {
		errf(err, errlen, "newAccount: contact too long");
		return -1;
	}
	if (acme_post(w, w->new_account, payload, &res, "newAccount", err, errlen) < 0)
		return -1;
	if (res.location[0] == '\0') {
		errf(err, errlen, "newAccount: the CA sent no account URL");
		acme_http_res_free(&res);
		return -1;
	}
	memcpy(w->kid, res.location, sizeof(w->kid));
	log_info("acme: %s account %s", res.status == 201 ? "registered" : "using", w->kid);
	acme_http_res_free(&res);
	return 0;
}

/* The delay before the next poll: ours, or the CA's Retry-After when longer (capped). */
static uint64_t poll_delay(uint64_t *ours, const struct acme_http_res *res)
{
	uint64_t d = *ours, ra = (uint64_t)res->retry_after * 1000u;

	if (ra > d)
		d = ra > 60000 ? 60000 : ra;
	*ours = *ours * 2 > ACME_POLL_MAX_MS ? ACME_POLL_MAX_MS : *ours * 2;
	return d;
}

/* 1 when s is a plausible token: base64url characters (§8.3), bounded. */
static int token_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= ACME_TOKEN_MAX &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

/*
 * Complete one authorization (§7.5): respond to its http-01 challenge and
 * poll until it is valid.  The published token goes into token (for the
 * caller to remove once the order is done).
 */
static int acme_authorize(struct acme_worker *w, const char *host, const char *url, char *token,
                          size_t tokcap, char *err, size_t errlen)
{
	struct acme_http_res res;
	struct json_doc d;
	char status[32], curl[ACME_HTTP_URL_MAX], keyauth[ACME_KEYAUTH_MAX];
	uint64_t delay = ACME_POLL_FIRST_MS, deadline;
	int chals, ch = -1, i, rc = -1;

	if (acme_post(w, url, NULL, &res, "authorization", err, errlen) < 0)
		return -1;
	if (parse_body(w, &res, &d, "authorization", err, errlen) < 0)
		goto out;
	status[0] = '\0';
	json_get_string(&d, 0, "status", status, sizeof(status));
	if (strcmp(status, "valid") == 0) {
		rc = 0; /* reused from an earlier order (§7.1.4) */
		goto out;
	}
	if (strcmp(status, "pending") != 0) {
		errf(err, errlen, "authorization for %s is %s", host, status_text(status));
		goto out;
	}
	chals = json_get(&d, 0, "challenges");
	for (i = 0; json_at(&d, chals, (size_t)i) >= 0; i++) {
		int c = json_at(&d, chals, (size_t)i);

		if (json_streq(&d, json_get(&d, c, "type"), "http-01")) {
			ch = c;
			break;
		}
	}
	if (ch < 0) {
		errf(err, errlen, "the CA offers no http-01 challenge for %s", host);
		goto out;
	}
	if (json_get_string(&d, ch, "url", curl, sizeof(curl)) < 0 ||
	    json_get_string(&d, ch, "token", token, tokcap) < 0 || !token_ok(token)) {
		token[0] = '\0';
		errf(err, errlen, "the http-01 challenge for %s has no usable url or token", host);
		goto out;
	}
	/* §8.1: keyAuthorization = token || '.' || base64url(Thumbprint(accountKey)) */
	snprintf(keyauth, sizeof(keyauth), "%s.%s", token, w->thumb);
	if (chal_publish(token, keyauth) < 0) {
		token[0] = '\0';
		errf(err, errlen, "too many challenges in progress");
		goto out;
	}
	log_debug("acme: %s: answering http-01 token %s", host, token);
	acme_http_res_free(&res);

	/* §7.5.1: an empty object tells the server to start validating */
	if (acme_post(w, curl, "{}", &res, "challenge", err, errlen) < 0)
		return -1;
	deadline = now_ms() + ACME_POLL_LIMIT_MS;
	for (;;) {
		int c;

		if (now_ms() > deadline) {
			errf(err, errlen, "validation of %s did not finish in %d s", host,
			     ACME_POLL_LIMIT_MS / 1000);
			goto out;
		}
		if (acme_sleep(poll_delay(&delay, &res)) < 0) {
			errf(err, errlen, "stopped");
			goto out;
		}
		acme_http_res_free(&res);
		if (acme_post(w, url, NULL, &res, "authorization", err, errlen) < 0)
			return -1;
		if (parse_body(w, &res, &d, "authorization", err, errlen) < 0)
			goto out;
		status[0] = '\0';
		json_get_string(&d, 0, "status", status, sizeof(status));
		if (strcmp(status, "valid") == 0)
			break;
		if (strcmp(status, "pending") == 0 || strcmp(status, "processing") == 0)
			continue;
		/* invalid (or deactivated, expired, revoked): the challenge says why */
		chals = json_get(&d, 0, "challenges");
		for (i = 0; (c = json_at(&d, chals, (size_t)i)) >= 0; i++) {
			char prob[768];

			if (json_streq(&d, json_get(&d, c, "type"), "http-01") &&
			    problem_from(&d, json_get(&d, c, "error"), prob, sizeof(prob)) == 0) {
				errf(err, errlen, "challenge failed: the CA said: %s", prob);
				goto out;
			}
		}
		errf(err, errlen, "authorization for %s is %s", host, status_text(status));
		goto out;
	}
	rc = 0;
out:
	acme_http_res_free(&res);
	return rc;
}

/* DER CSR for host with key, subjectAltName DNS:host (§7.4), base64url in out. */
static int make_csr(EVP_PKEY *key, const char *host, char *out, size_t cap)
{
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	char san[300];
	int len, rc = -1;

	if (req == NULL || exts == NULL || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1)
		goto out;
	/* CN is optional for ACME and limited to 64 characters (RFC 5280) */
	if (strlen(host) <= 64 &&
	    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
	                               (const unsigned char *)host, -1, -1, 0) != 1)
		goto out;
	snprintf(san, sizeof(san), "DNS:%s", host);
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
	if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext))
		goto out;
	ext = NULL;
	if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_set_pubkey(req, key) != 1 ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0)
		goto out;
	len = i2d_X509_REQ(req, &der);
	if (len <= 0 || acme_b64url(der, (size_t)len, out, cap) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_free(der);
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

/* Poll the order until it is valid (§7.4); the certificate URL goes to cert_url. */
static int order_wait(struct acme_worker *w, const char *host, const char *order_url,
                      struct acme_http_res *res, char *cert_url, size_t cap, char *err,
                      size_t errlen)
{
	uint64_t delay = ACME_POLL_FIRST_MS, deadline = now_ms() + ACME_POLL_LIMIT_MS;
	struct json_doc d;
	char status[32], prob[768];

	for (;;) {
		if (parse_body(w, res, &d, "order", err, errlen) < 0)
			return -1;
		status[0] = '\0';
		json_get_string(&d, 0, "status", status, sizeof(status));
		if (strcmp(status, "valid") == 0) {
			if (json_get_string(&d, 0, "certificate", cert_url, cap) <= 0) {
				errf(err, errlen, "the valid order for %s has no certificate URL",
				     host);
				return -1;
			}
			return 0;
		}
		if (strcmp(status, "processing") != 0 && strcmp(status, "ready") != 0 &&
		    strcmp(status, "pending") != 0) {
			if (problem_from(&d, json_get(&d, 0, "error"), prob, sizeof(prob)) == 0)
				errf(err, errlen, "order for %s is %s: the CA said: %s", host,
				     status_text(status), prob);
			else
				errf(err, errlen, "order for %s is %s", host, status_text(status));
			return -1;
		}
		if (now_ms() > deadline) {
			errf(err, errlen, "the CA did not issue for %s within %d s", host,
			     ACME_POLL_LIMIT_MS / 1000);
			return -1;
		}
		if (acme_sleep(poll_delay(&delay, res)) < 0) {
			errf(err, errlen, "stopped");
			return -1;
		}
		acme_http_res_free(res);
		if (acme_post(w, order_url, NULL, res, "order", err, errlen) < 0)
			return -1;
	}
}

/*
 * Check the downloaded chain: PEM certificates, the first one for our key
 * and naming host, not expired and not already due for renewal (else we
 * would order again at once, in a loop).  Returns how many certificates it
 * holds, or -1.
 */
static int chain_check(const char *pem, size_t len, EVP_PKEY *key, const char *host,
                       uint32_t renew_days, time_t *nb, time_t *na, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x, *leaf = NULL;
	char t1[32], t2[32];
	time_t now = time(NULL);
	int n = 0, rc = -1;

	if (b == NULL)
		goto out;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (n++ == 0)
			leaf = x;
		else
			X509_free(x);
	}
	if (leaf == NULL) {
		errf(err, errlen, "the CA sent no PEM certificate");
		goto out;
	}
	if (X509_check_private_key(leaf, key) != 1 ||
	    X509_check_host(leaf, host, 0, 0, NULL) != 1) {
		errf(err, errlen, "the CA sent a certificate not for our key or not for %s", host);
		goto out;
	}
	if (asn1_time(X509_get0_notBefore(leaf), nb) < 0 ||
	    asn1_time(X509_get0_notAfter(leaf), na) < 0) {
		errf(err, errlen, "the certificate has unreadable dates");
		goto out;
	}
	if (*na <= now) {
		errf(err, errlen,
		     "the CA sent a certificate that has already expired (valid until %s)",
		     fmt_time(*na, t1, sizeof(t1)));
		goto out;
	}
	if (acme_renew_at(*nb, *na, renew_days) <= now) {
		errf(err, errlen,
		     "the CA sent a certificate already due for renewal (valid until %s, renewal "
		     "from %s)",
		     fmt_time(*na, t1, sizeof(t1)),
		     fmt_time(acme_renew_at(*nb, *na, renew_days), t2, sizeof(t2)));
		goto out;
	}
	rc = n;
out:
	ERR_clear_error();
	X509_free(leaf);
	BIO_free(b);
	return rc;
}

/* The issuer from Link rel="up" (§7.4.2) as PEM, appended to the chain. */
static char *chain_append_up(struct acme_worker *w, const char *up, char *chain, size_t *len,
                             char *err, size_t errlen)
{
	struct acme_http_res res;
	const unsigned char *p;
	X509 *x = NULL;
	BIO *b = NULL;
	char *data, *out = NULL;
	long n;

	if (acme_post(w, up, NULL, &res, "issuer certificate", err, errlen) < 0)
		return NULL;
	b = BIO_new_mem_buf(res.body, (int)res.body_len);
	x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	if (x == NULL) { /* application/pkix-cert: DER */
		p = (const unsigned char *)res.body;
		x = d2i_X509(NULL, &p, (long)res.body_len);
	}
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	if (x == NULL || b == NULL || PEM_write_bio_X509(b, x) != 1) {
		errf(err, errlen, "the issuer certificate from %s is unreadable", up);
		goto out;
	}
	n = BIO_get_mem_data(b, &data);
	out = realloc(chain, *len + (size_t)n + 2);
	if (out == NULL)
		goto out;
	chain = NULL;
	if (*len > 0 && out[*len - 1] != '\n')
		out[(*len)++] = '\n';
	memcpy(out + *len, data, (size_t)n);
	*len += (size_t)n;
out:
	ERR_clear_error();
	free(chain);
	X509_free(x);
	BIO_free(b);
	acme_http_res_free(&res);
	return out;
}

/* Replace <host>.key then <host>.crt atomically (temp file, fsync, rename). */
static int store(struct acme_worker *w, const char *host, const char *keypem, size_t keylen,
                 const char *chain, size_t chainlen, char *err, size_t errlen)
{
	char tk[ACME_PATH_MAX], tc[ACME_PATH_MAX], path[ACME_PATH_MAX], name[300];

	snprintf(name, sizeof(name), "%s.key", host);
	if (write_temp(w->cert_dir, name, keypem, keylen, 0600, tk, sizeof(tk), err, errlen) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s.crt", host);
	if (write_temp(w->cert_dir, name, chain, chainlen, 0644, tc, sizeof(tc), err, errlen) < 0) {
		unlink(tk);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.key", w->cert_dir, host);
	if (rename(tk, path) < 0) {
		errf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
		unlink(tk);
		unlink(tc);
		return -1;
	}
	/* The key's rename is on disk before the certificate's can be: after a
	 * crash in between, the edge finds a key that does not match and falls
	 * back (edge/main.c, edge/certs.c), and the next check replaces both. */
	fsync_dir(w->cert_dir);
	snprintf(path, sizeof(path), "%s/%s.crt", w->cert_dir, host);
	if (rename(tc, path) < 0) {
		errf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
		unlink(tc);
		return -1;
	}
	fsync_dir(w->cert_dir);
	return 0;
}

/* One complete issuance for host; 0, or -1 with err.  *issued is set once
 * the CA has issued a certificate (even one we then refuse). */
static int acme_issue(struct acme_worker *w, const char *host, time_t *nb, time_t *na, int *issued,
                      char *err, size_t errlen)
{
	struct acme_http_res res = {0};
	struct json_doc d;
	char payload[2200], order_url[ACME_HTTP_URL_MAX], fin[ACME_HTTP_URL_MAX];
	char cert_url[ACME_HTTP_URL_MAX], up[ACME_HTTP_URL_MAX];
	char tokens[4][ACME_TOKEN_MAX + 1];
	char *csr = NULL, *keypem = NULL, *chain = NULL;
	size_t keylen = 0, chainlen, ntok = 0, i;
	EVP_PKEY *key = NULL;
	int authz, n, rc = -1;

	memset(tokens, 0, sizeof(tokens));
	if (acme_account(w, err, errlen) < 0)
		return -1;
	/* §7.4: one DNS identifier per order */
	snprintf(payload, sizeof(payload),
	         "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"%s\"}]}", host);
	if (acme_post(w, w->new_order, payload, &res, "newOrder", err, errlen) < 0)
		goto out;
	if (res.location[0] == '\0') {
		errf(err, errlen, "newOrder: the CA sent no order URL");
		goto out;
	}
	memcpy(order_url, res.location, sizeof(order_url));
	if (parse_body(w, &res, &d, "newOrder", err, errlen) < 0)
		goto out;
	if (json_get_string(&d, 0, "finalize", fin, sizeof(fin)) <= 0) {
		errf(err, errlen, "newOrder: the order has no finalize URL");
		goto out;
	}
	authz = json_get(&d, 0, "authorizations");
	if (json_type(&d, authz) != JSON_ARRAY || d.toks[authz].size == 0 ||
	    d.toks[authz].size > 4) {
		errf(err, errlen, "newOrder: unexpected authorizations list");
		goto out;
	}
	{
		/* copy the URLs out: w->toks is reused by every later response */
		char urls[4][ACME_HTTP_URL_MAX];
		size_t nurls = d.toks[authz].size;

		for (i = 0; i < nurls; i++)
			if (json_string(&d, json_at(&d, authz, i), urls[i], sizeof(urls[i])) <= 0) {
				errf(err, errlen, "newOrder: bad authorization URL");
				goto out;
			}
		acme_http_res_free(&res);
		for (i = 0; i < nurls; i++) {
			n = acme_authorize(w, host, urls[i], tokens[ntok], sizeof(tokens[ntok]),
			                   err, errlen);
			if (tokens[ntok][0] != '\0')
				ntok++;
			if (n < 0)
				goto out;
		}
	}

	/* a fresh key for every certificate */
	key = EVP_EC_gen("P-256");
	csr = malloc(2048);
	if (key == NULL || csr == NULL || make_csr(key, host, csr, 2048) < 0) {
		errf(err, errlen, "cannot make the key and CSR");
		goto out;
	}
	if (strlen(csr) + 12 >= sizeof(payload)) {
		errf(err, errlen, "CSR too large");
		goto out;
	}
	snprintf(payload, sizeof(payload), "{\"csr\":\"%s\"}", csr);
	if (acme_post(w, fin, payload, &res, "finalize", err, errlen) < 0)
		goto out;
	if (order_wait(w, host, order_url, &res, cert_url, sizeof(cert_url), err, errlen) < 0)
		goto out;
	acme_http_res_free(&res);

	*issued = 1; /* counts against the CA's limits whatever happens next */
	if (acme_post(w, cert_url, NULL, &res, "certificate download", err, errlen) < 0)
		goto out;
	chainlen = res.body_len;
	chain = res.body;
	res.body = NULL;
	snprintf(up, sizeof(up), "%s", res.link_up);
	n = chain_check(chain, chainlen, key, host, w->renew_days, nb, na, err, errlen);
	if (n < 0)
		goto out;
	if (n == 1 && up[0] != '\0') {
		chain = chain_append_up(w, up, chain, &chainlen, err, errlen);
		if (chain == NULL)
			goto out;
	}
	keypem = key_pem(key, &keylen);
	if (keypem == NULL) {
		errf(err, errlen, "cannot encode the certificate key");
		goto out;
	}
	if (store(w, host, keypem, keylen, chain, chainlen, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	for (i = 0; i < ntok; i++)
		chal_remove(tokens[i]);
	acme_http_res_free(&res);
	if (keypem != NULL)
		OPENSSL_clear_free(keypem, keylen);
	free(chain);
	free(csr);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

/* ---- the worker ------------------------------------------------------------------ */

/* Take the current settings; a changed CA, directory or email drops the account. */
static void worker_settings(struct acme_worker *w)
{
	pthread_mutex_lock(&acme.lock);
	if (w->generation != acme.generation || w->cert_dir[0] == '\0') {
		/* Another CA has its own limits; the same one (a new email or
		 * trust anchor) still limits us until the time it gave. */
		if (strcmp(w->directory, acme.directory) != 0)
			w->paused_until = 0;
		snprintf(w->cert_dir, sizeof(w->cert_dir), "%s", acme.cert_dir);
		snprintf(w->directory, sizeof(w->directory), "%s", acme.directory);
		snprintf(w->email, sizeof(w->email), "%s", acme.email ? acme.email : "");
		snprintf(w->ca, sizeof(w->ca), "%s", acme.ca ? acme.ca : "");
		w->generation = acme.generation;
		if (w->http_ready)
			acme_http_free(&w->http);
		w->http_ready = 0;
		w->have_dir = 0;
		w->kid[0] = '\0';
		w->nonce[0] = '\0';
		EVP_PKEY_free(w->account);
		w->account = NULL;
	}
	w->renew_days = acme.renew_days;
	pthread_mutex_unlock(&acme.lock);
}

static void acme_process(struct acme_worker *w, const struct acme_host *h, uint32_t backoff,
                         uint32_t min_gap)
{
	char why[ACME_ERR_MAX], err[ACME_ERR_MAX], t1[32], t2[32], d1[32];
	const char *host = h->name;
	time_t renew = 0, nb = 0, na = 0;
	uint64_t now = now_ms(), wait, issued_at = 0;
	unsigned failures = h->failures;
	int issued = 0;

	if (cert_check(w, host, &renew, &na, why, sizeof(why)) == 1) {
		time_t left = renew - time(NULL);

		wait = (uint64_t)left * 1000u;
		if (failures > 0)
			log_info("acme: %s: a valid certificate appeared, renewal from %s", host,
			         fmt_time(renew, t1, sizeof(t1)));
		else
			log_debug("acme: %s: certificate valid until %s, renewal from %s", host,
			          fmt_time(na, t2, sizeof(t2)), fmt_time(renew, t1, sizeof(t1)));
		host_schedule(host, now + (wait < ACME_HOUR_MS ? wait : ACME_HOUR_MS), 0, 0);
		return;
	}
	/* However short the certificates a CA hands out, one host gets at most
	 * one every min_gap: a CA (or clock) that makes each new certificate
	 * due at once must not make us order in a loop. */
	if (h->issued != 0 && now - h->issued < min_gap) {
		wait = h->issued + min_gap - now;
		log_info("acme: %s: a certificate is needed (%s), but the last one was issued %s "
		         "ago; next request in %s",
		         host, why, fmt_delay(now - h->issued, t1, sizeof(t1)),
		         fmt_delay(wait, d1, sizeof(d1)));
		host_schedule(host, now + wait, failures, 0);
		return;
	}
	log_info("acme: %s: requesting a certificate (%s)", host, why);
	if (acme_issue(w, host, &nb, &na, &issued, err, sizeof(err)) < 0) {
		if (acme_sleep(0) < 0) {
			log_info("acme: %s: certificate request abandoned: stopping", host);
			return;
		}
		/* The directory and the account are kept (note_error() drops
		 * them when the CA says they are stale); the nonce may be. */
		w->nonce[0] = '\0';
		if (w->account_stale) {
			w->kid[0] = '\0';
			w->account_stale = 0;
		}
		failures++;
		wait = acme_backoff_ms(backoff, failures);
		now = now_ms();
		if (issued) {
			issued_at = now;
			if (wait < min_gap)
				wait = min_gap;
		}
		if (w->pause_ms > 0) {
			/* RFC 8555 §6.6: the limit is the account's or the CA's, not
			 * this host's: nothing at all goes to the CA until then. */
			w->paused_until = now + w->pause_ms;
			if (wait < w->pause_ms)
				wait = w->pause_ms;
			log_error("acme: %s: certificate request failed: %s; the CA is limiting "
			          "requests: no request to it for %s",
			          host, err, fmt_delay(w->pause_ms, d1, sizeof(d1)));
			w->pause_ms = 0;
		} else {
			log_error("acme: %s: certificate request failed: %s; retrying in %s", host,
			          err, fmt_delay(wait, d1, sizeof(d1)));
		}
		host_schedule(host, now + wait, failures, issued_at);
		return;
	}
	renew = acme_renew_at(nb, na, w->renew_days);
	log_info("acme: %s: certificate issued, valid until %s, renewal from %s", host,
	         fmt_time(na, t1, sizeof(t1)), fmt_time(renew, t2, sizeof(t2)));
	wait = renew > time(NULL) ? (uint64_t)(renew - time(NULL)) * 1000u : 0;
	now = now_ms();
	host_schedule(host, now + (wait < ACME_HOUR_MS ? wait : ACME_HOUR_MS), 0, now);
	atomic_store(&acme.updated, 1);
	pthread_mutex_lock(&acme.lock);
	if (acme.ctx != NULL)
		lws_cancel_service(acme.ctx);
	pthread_mutex_unlock(&acme.lock);
}

static void *acme_main(void *arg)
{
	struct acme_worker *w = arg;

	for (;;) {
		struct acme_host host;
		uint64_t now = now_ms(), next = now + ACME_HOUR_MS;
		uint32_t backoff, min_gap;
		struct pollfd p[2];
		int found = 0;
		uint64_t drain;

		worker_settings(w);
		pthread_mutex_lock(&acme.lock);
		backoff = acme.backoff_ms;
		min_gap = acme.min_gap_ms;
		/* rate limited: no host is looked at (nor ordered) until the pause ends */
		if (now < w->paused_until)
			next = w->paused_until;
		for (size_t i = 0; now >= w->paused_until && i < acme.nhosts; i++) {
			if (!found && acme.hosts[i].due <= now) {
				host = acme.hosts[i];
				/* not due again until acme_process reschedules it */
				acme.hosts[i].due = now + ACME_HOUR_MS;
				found = 1;
			} else if (acme.hosts[i].due < next) {
				next = acme.hosts[i].due;
			}
		}
		pthread_mutex_unlock(&acme.lock);
		if (acme_sleep(0) < 0)
			break;
		if (found) {
			acme_process(w, &host, backoff, min_gap);
			continue;
		}
		p[0] = (struct pollfd){acme.stop_fd, POLLIN, 0};
		p[1] = (struct pollfd){acme.wake_fd, POLLIN, 0};
		if (poll(p, 2, next - now > INT_MAX ? INT_MAX : (int)(next - now)) > 0) {
			if (p[0].revents)
				break;
			if (read(acme.wake_fd, &drain, sizeof(drain)) < 0 && errno != EAGAIN)
				log_debug("acme: wake: %s", strerror(errno));
		}
	}
	if (w->http_ready)
		acme_http_free(&w->http);
	EVP_PKEY_free(w->account);
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
	return NULL;
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static int str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* A delay in ms from the environment (for tests), def when unset or bad. */
static uint32_t env_ms(const char *name, uint32_t def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (s == NULL || *s == '\0')
		return def;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > ACME_BACKOFF_MAX_MS) {
		log_warn("acme: ignoring %s=%s (1..%u)", name, s, ACME_BACKOFF_MAX_MS);
		return def;
	}
	return (uint32_t)v;
}

int acme_start(const struct edge_config *cfg, struct lws_context *ctx)
{
	struct acme_worker *w = NULL;
	sigset_t all, old;
	struct stat st;
	int err;

	if (!cfg->tls.acme || cfg->tls.cert_dir == NULL || cfg->tls.acme_directory == NULL) {
		log_error("acme: needs tls.cert_dir and tls.acme.directory");
		return -1;
	}
	if (acme.running) {
		log_error("acme: already started");
		return -1;
	}
	if (stat(cfg->tls.cert_dir, &st) < 0) {
		if (errno != ENOENT || mkdir(cfg->tls.cert_dir, 0700) < 0) {
			log_error("acme: certificate directory %s: %s", cfg->tls.cert_dir,
			          strerror(errno));
			return -1;
		}
		log_info("acme: created the certificate directory %s", cfg->tls.cert_dir);
	} else if (!S_ISDIR(st.st_mode)) {
		log_error("acme: %s is not a directory", cfg->tls.cert_dir);
		return -1;
	}
	if (strlen(cfg->tls.cert_dir) >= ACME_DIR_MAX ||
	    strlen(cfg->tls.acme_directory) >= ACME_HTTP_URL_MAX ||
	    (cfg->tls.acme_ca != NULL && strlen(cfg->tls.acme_ca) >= ACME_PATH_MAX)) {
		log_error("acme: tls.cert_dir, tls.acme.directory or tls.acme.ca is too long");
		return -1;
	}
	w = calloc(1, sizeof(*w));
	acme.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	acme.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	acme.cert_dir = strdup(cfg->tls.cert_dir);
	acme.directory = strdup(cfg->tls.acme_directory);
	acme.email = dup_or_null(cfg->tls.acme_email);
	acme.ca = dup_or_null(cfg->tls.acme_ca);
	if (w == NULL || acme.stop_fd < 0 || acme.wake_fd < 0 || acme.cert_dir == NULL ||
	    acme.directory == NULL || (cfg->tls.acme_email && !acme.email) ||
	    (cfg->tls.acme_ca && !acme.ca)) {
		log_error("acme: cannot start: %s", strerror(errno ? errno : ENOMEM));
		goto fail;
	}
	acme.renew_days = cfg->tls.acme_renew_days ? cfg->tls.acme_renew_days : 30;
	acme.backoff_ms = env_ms("RELAIS_ACME_BACKOFF_MS", 60000);
	acme.min_gap_ms = env_ms("RELAIS_ACME_MIN_INTERVAL_MS", ACME_MIN_GAP_MS);
	acme.ctx = ctx;
	acme.generation++;
	atomic_store(&acme.updated, 0);

	/* The worker takes no signals: the edge reads them from a signalfd, and a
	 * SIGPIPE from a CA that hung up must not kill the process. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&acme.thread, NULL, acme_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		log_error("acme: cannot start the worker thread: %s", strerror(err));
		goto fail;
	}
	pthread_mutex_lock(&acme.lock);
	acme.running = 1;
	pthread_mutex_unlock(&acme.lock);
	log_info("acme: using %s, certificates in %s", acme.directory, acme.cert_dir);
	return 0;
fail:
	free(w);
	acme_stop();
	return -1;
}

void acme_reload(const struct edge_config *cfg)
{
	char *nd, *ne, *nc;

	if (!cfg->tls.acme || cfg->tls.acme_directory == NULL)
		return;
	nd = strdup(cfg->tls.acme_directory);
	ne = dup_or_null(cfg->tls.acme_email);
	nc = dup_or_null(cfg->tls.acme_ca);
	pthread_mutex_lock(&acme.lock);
	if (!acme.running || nd == NULL || (cfg->tls.acme_email && !ne) ||
	    (cfg->tls.acme_ca && !nc)) {
		pthread_mutex_unlock(&acme.lock);
		free(nd);
		free(ne);
		free(nc);
		return;
	}
	if (str_differs(acme.directory, nd) || str_differs(acme.email, ne) ||
	    str_differs(acme.ca, nc)) {
		free(acme.directory);
		free(acme.email);
		free(acme.ca);
		acme.directory = nd;
		acme.email = ne;
		acme.ca = nc;
		nd = ne = nc = NULL;
		acme.generation++;
		for (size_t i = 0; i < acme.nhosts; i++) {
			acme.hosts[i].failures = 0;
			acme.hosts[i].due = 0;
		}
		acme.ncool = 0; /* the waits of hosts no route needs go too */
	}
	if (cfg->tls.acme_renew_days)
		acme.renew_days = cfg->tls.acme_renew_days;
	pthread_mutex_unlock(&acme.lock);
	free(nd);
	free(ne);
	free(nc);
	wake(acme.wake_fd);
}

void acme_stop(void)
{
	int running;

	pthread_mutex_lock(&acme.lock);
	running = acme.running;
	acme.running = 0;
	pthread_mutex_unlock(&acme.lock);
	if (running) {
		wake(acme.stop_fd);
		pthread_join(acme.thread, NULL);
	}
	if (acme.stop_fd >= 0)
		close(acme.stop_fd);
	if (acme.wake_fd >= 0)
		close(acme.wake_fd);
	acme.stop_fd = acme.wake_fd = -1;
	free(acme.cert_dir);
	free(acme.directory);
	free(acme.email);
	free(acme.ca);
	acme.cert_dir = acme.directory = acme.email = acme.ca = NULL;
	free(acme.hosts);
	acme.hosts = NULL;
	acme.nhosts = 0;
	acme.ctx = NULL;
	memset(acme.chals, 0, sizeof(acme.chals));
}
