/*
 * tests/unit/edge/acme.c - the pure parts of edge/acme.c: base64url, the JWK
 * and its RFC 7638 thumbprint (known answers), ES256 signatures, the JWS
 * layout, renewal times, backoff, problem documents, and the challenge
 * table of a module that is not running.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/json.h"
#include "edge/acme.h"
#include "tests/unit/unit.h"

/* RFC 7515 Appendix A.3: the example EC P-256 key (d and the public point). */
static const char rfc7515_a3_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjpsQnnGQmL+YBIff\n"
    "H1136cspYG6+0iY7X1fCE9+E9LKhRANCAAR/zc4ncPbEXUGDy+5v20t7WAczNXvp\n"
    "7xO6z248e9FURcfxRM0bvZt+hyzf7bnuufSzaV1uqQskrYpGIyiFiOWt\n"
    "-----END PRIVATE KEY-----\n";

static EVP_PKEY *load_a3(void)
{
	BIO *b = BIO_new_mem_buf(rfc7515_a3_pem, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);

	BIO_free(b);
	return k;
}

/* Verify a raw R || S ES256 signature with OpenSSL. */
static int es256_verify(EVP_PKEY *key, const void *msg, size_t len, const uint8_t sig[64])
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
	unsigned char *der = NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int dlen, ok = 0;

	ECDSA_SIG_set0(s, r, ss);
	dlen = i2d_ECDSA_SIG(s, &der);
	if (dlen > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1)
		ok = EVP_DigestVerify(md, der, (size_t)dlen, msg, len) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(s);
	EVP_MD_CTX_free(md);
	return ok;
}

static void test_b64url(void)
{
	static const struct {
		const char *in, *out;
	} v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
	         {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
	const uint8_t bin[] = {0xfb, 0xff, 0xbf, 0x00};
	char out[64];
	uint8_t back[64];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i].in);

		CHECK(acme_b64url(v[i].in, n, out, sizeof(out)) == (int)strlen(v[i].out));
		CHECK(strcmp(out, v[i].out) == 0);
		CHECK(acme_b64url_decode(out, strlen(out), back, sizeof(back)) == (int)n);
		CHECK(memcmp(back, v[i].in, n) == 0);
		/* exactly enough room for the text and its NUL, not one byte less */
		CHECK(acme_b64url(v[i].in, n, out, strlen(v[i].out) + 1) == (int)strlen(v[i].out));
		CHECK(acme_b64url(v[i].in, n, out, strlen(v[i].out)) == -1);
	}
	/* the URL-safe alphabet: '-' and '_' instead of '+' and '/' */
	CHECK(acme_b64url(bin, sizeof(bin), out, sizeof(out)) == 6 && strcmp(out, "-_-_AA") == 0);
	CHECK(acme_b64url_decode("-_-_AA", 6, back, sizeof(back)) == 4);
	CHECK(memcmp(back, bin, 4) == 0);
	CHECK(acme_b64url_decode("+/", 2, back, sizeof(back)) == -1);
	CHECK(acme_b64url_decode("Zg==", 4, back, sizeof(back)) == -1); /* no padding */
	CHECK(acme_b64url_decode("Z", 1, back, sizeof(back)) == -1);
	CHECK(acme_b64url_decode("Zh", 2, back, sizeof(back)) == -1); /* non-zero spare bits */
	CHECK(acme_b64url_decode("Zm9v", 4, back, 2) == -1);
}

static void test_thumbprint_rfc7638(void)
{
	/* RFC 7638 §3.1: the RSA example key and its thumbprint */
	static const char jwk[] =
	    "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":"
	    "\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhW"
	    "x4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-"
	    "5JsGY4Hc5n9y"
	    "BXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qM"
	    "QvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0"
	    "Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\"}";
	char t[44];

	CHECK(acme_thumbprint(jwk, t) == 0);
	CHECK(strcmp(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs") == 0);
}

static void test_jwk_known_key(void)
{
	EVP_PKEY *k = load_a3();
	char jwk[256], t[44];

	CHECK(k != NULL);
	if (k == NULL)
		return;
	CHECK(acme_jwk(k, jwk, sizeof(jwk)) > 0);
	CHECK(strcmp(jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\","
	                  "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
	                  "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}") == 0);
	CHECK(acme_thumbprint(jwk, t) == 0);
	CHECK(strcmp(t, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U") == 0);
	CHECK(acme_jwk(k, jwk, 100) == -1);
	EVP_PKEY_free(k);

	/* other curves are refused */
	k = EVP_EC_gen("P-384");
	CHECK(k != NULL && acme_jwk(k, jwk, sizeof(jwk)) == -1);
	EVP_PKEY_free(k);
}

static void test_es256(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	uint8_t sig[64], sig2[64];
	const char msg[] = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UifQ";

	CHECK(k != NULL);
	for (int i = 0; i < 20; i++) { /* R or S with leading zero bytes must still be 32 bytes */
		CHECK(acme_es256(k, msg, strlen(msg), sig) == 0);
		CHECK(es256_verify(k, msg, strlen(msg), sig));
	}
	CHECK(acme_es256(k, msg, strlen(msg), sig2) == 0);
	CHECK(memcmp(sig, sig2, 64) != 0); /* ECDSA is randomised */
	sig[10] ^= 1;
	CHECK(!es256_verify(k, msg, strlen(msg), sig));
	EVP_PKEY_free(k);
}

/* Decode member name of the flattened JWS at d into out; returns its length. */
static int jws_part(const struct json_doc *d, const char *name, uint8_t *out, size_t cap)
{
	char b64[4096];
	int n = json_get_string(d, 0, name, b64, sizeof(b64));

	return n < 0 ? -1 : acme_b64url_decode(b64, (size_t)n, out, cap - 1);
}

static void test_jws_structure(void)
{
	EVP_PKEY *k = load_a3();
	struct json_tok toks[64], ptoks[64];
	struct json_doc d, p;
	uint8_t prot[2048], payload[2048], sig[128];
	char jwk[256], buf[512], *jws, *signing;
	int np, nl, jv;

	CHECK(k != NULL && acme_jwk(k, jwk, sizeof(jwk)) > 0);

	/* newAccount style: the key itself in the header */
	jws = acme_jws(k, jwk, NULL, "nonce-1_A", "https://ca.test/new-acct",
	               "{\"termsOfServiceAgreed\":true}");
	CHECK(jws != NULL);
	if (jws == NULL)
		return;
	CHECK(json_parse(&d, jws, strlen(jws), toks, 64, NULL) > 0);
	CHECK(json_type(&d, 0) == JSON_OBJECT && d.toks[0].size == 3);
	np = jws_part(&d, "protected", prot, sizeof(prot));
	nl = jws_part(&d, "payload", payload, sizeof(payload));
	CHECK(np > 0 && nl > 0);
	CHECK(jws_part(&d, "signature", sig, sizeof(sig)) == 64);
	payload[nl] = '\0';
	CHECK(strcmp((char *)payload, "{\"termsOfServiceAgreed\":true}") == 0);
	CHECK(json_parse(&p, (char *)prot, (size_t)np, ptoks, 64, NULL) > 0);
	CHECK(json_get_string(&p, 0, "alg", buf, sizeof(buf)) > 0 && strcmp(buf, "ES256") == 0);
	CHECK(json_get_string(&p, 0, "nonce", buf, sizeof(buf)) > 0 &&
	      strcmp(buf, "nonce-1_A") == 0);
	CHECK(json_get_string(&p, 0, "url", buf, sizeof(buf)) > 0 &&
	      strcmp(buf, "https://ca.test/new-acct") == 0);
	CHECK(json_get(&p, 0, "kid") == -1);
	jv = json_get(&p, 0, "jwk");
	CHECK(json_type(&p, jv) == JSON_OBJECT);
	CHECK(json_get_string(&p, jv, "x", buf, sizeof(buf)) > 0 &&
	      strcmp(buf, "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU") == 0);
	CHECK(json_streq(&p, json_get(&p, jv, "kty"), "EC"));
	/* RFC 7515 §5.2: the signature covers ASCII(protected '.' payload) as sent */
	{
		char a[2048], b[2048];
		int la = json_get_string(&d, 0, "protected", a, sizeof(a));
		int lb = json_get_string(&d, 0, "payload", b, sizeof(b));

		signing = malloc((size_t)la + (size_t)lb + 2);
		sprintf(signing, "%s.%s", a, b);
		CHECK(es256_verify(k, signing, strlen(signing), sig));
		free(signing);
	}
	free(jws);

	/* POST-as-GET with a kid; JSON escapes survive the round trip */
	jws = acme_jws(k, NULL, "https://ca.test/acct/\"1\"\\", "n2", "https://ca.test/order/1",
	               NULL);
	CHECK(jws != NULL);
	if (jws == NULL)
		goto out;
	CHECK(json_parse(&d, jws, strlen(jws), toks, 64, NULL) > 0);
	CHECK(json_get_string(&d, 0, "payload", buf, sizeof(buf)) == 0);
	np = jws_part(&d, "protected", prot, sizeof(prot));
	CHECK(np > 0 && json_parse(&p, (char *)prot, (size_t)np, ptoks, 64, NULL) > 0);
	CHECK(json_get(&p, 0, "jwk") == -1);
	CHECK(json_get_string(&p, 0, "kid", buf, sizeof(buf)) > 0 &&
	      strcmp(buf, "https://ca.test/acct/\"1\"\\") == 0);
	CHECK(jws_part(&d, "signature", sig, sizeof(sig)) == 64);
	{
		char a[2048];
		int la = json_get_string(&d, 0, "protected", a, sizeof(a));

		CHECK(la > 0 && la + 2 < (int)sizeof(a));
		a[la] = '.';
		a[la + 1] = '\0';
		CHECK(es256_verify(k, a, strlen(a), sig));
	}
	free(jws);
out:
	EVP_PKEY_free(k);
}

static void test_renew_at(void)
{
	const time_t day = 86400, t0 = 1700000000;

	/* 90 days, renew 30 days before: both rules agree on day 60 */
	CHECK(acme_renew_at(t0, t0 + 90 * day, 30) == t0 + 60 * day);
	/* a year: 30 days before expiry, not at two thirds */
	CHECK(acme_renew_at(t0, t0 + 365 * day, 30) == t0 + 335 * day);
	/* short-lived (6 days): two thirds of the lifetime */
	CHECK(acme_renew_at(t0, t0 + 6 * day, 30) == t0 + 4 * day);
	/* seconds: 8 s lifetime -> 5 s (rounded down) */
	CHECK(acme_renew_at(t0, t0 + 8, 30) == t0 + 5);
	CHECK(acme_renew_at(t0, t0 + 9, 30) == t0 + 6);
	/* a longer renew window moves the date earlier */
	CHECK(acme_renew_at(t0, t0 + 90 * day, 45) == t0 + 60 * day);
	CHECK(acme_renew_at(t0, t0 + 90 * day, 10) == t0 + 80 * day);
	/* nonsense dates (not_after before not_before): renew at once */
	CHECK(acme_renew_at(t0, t0 - day, 30) <= t0);
	/* no overflow with a huge lifetime */
	CHECK(acme_renew_at(0, (time_t)1 << 40, 30) == ((time_t)1 << 40) - 30 * day);
}

static void test_backoff(void)
{
	CHECK(acme_backoff_ms(60000, 1) == 60000);
	CHECK(acme_backoff_ms(60000, 2) == 120000);
	CHECK(acme_backoff_ms(60000, 3) == 240000);
	CHECK(acme_backoff_ms(60000, 9) == 60000u << 8);
	CHECK(acme_backoff_ms(60000, 10) == ACME_BACKOFF_MAX_MS);
	CHECK(acme_backoff_ms(60000, 1000000) == ACME_BACKOFF_MAX_MS);
	CHECK(acme_backoff_ms(1000, 1) == 1000 && acme_backoff_ms(1000, 2) == 2000);
	CHECK(acme_backoff_ms(0, 1) >= 1);
}

static void test_rate_pause(void)
{
	const char *rl = "urn:ietf:params:acme:error:rateLimited";

	/* not a rate limit: no pause, whatever Retry-After says */
	CHECK(acme_rate_pause_ms(400, "urn:ietf:params:acme:error:badCSR", 30) == 0);
	CHECK(acme_rate_pause_ms(500, NULL, 0) == 0);
	CHECK(acme_rate_pause_ms(403, "urn:ietf:params:acme:error:unauthorized", 100) == 0);
	/* 429, 503, or the rateLimited type under any status */
	CHECK(acme_rate_pause_ms(429, NULL, 120) == 120000);
	CHECK(acme_rate_pause_ms(503, "", 300) == 300000);
	CHECK(acme_rate_pause_ms(400, rl, 7200) == 7200000);
	/* no Retry-After: one hour; clamped to 1 min .. 24 h */
	CHECK(acme_rate_pause_ms(429, rl, 0) == 3600000);
	CHECK(acme_rate_pause_ms(429, rl, 1) == 60000);
	CHECK(acme_rate_pause_ms(503, NULL, 59) == 60000);
	CHECK(acme_rate_pause_ms(429, NULL, 86400) == 86400000);
	CHECK(acme_rate_pause_ms(429, NULL, 0xffffffffu) == 86400000);
}

static void test_problem(void)
{
	char out[256];
	const char *p1 = "{\"type\":\"urn:ietf:params:acme:error:unauthorized\",\"detail\":"
	                 "\"Invalid response: 404\",\"status\":403}";
	const char *p2 = "{\"type\":\"about:blank\"}";
	const char *p3 = "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"a\\nb\"}";

	CHECK(acme_problem(p1, strlen(p1), out, sizeof(out)) == 0);
	CHECK(strcmp(out, "Invalid response: 404 (unauthorized)") == 0);
	CHECK(acme_problem(p2, strlen(p2), out, sizeof(out)) == 0 &&
	      strcmp(out, "about:blank") == 0);
	CHECK(acme_problem(p3, strlen(p3), out, sizeof(out)) == 0 &&
	      strcmp(out, "a b (malformed)") == 0);
	CHECK(acme_problem("<html>", 6, out, sizeof(out)) == -1);
	CHECK(acme_problem("{\"detail\":\"x\"}", 14, out, sizeof(out)) == -1);
	CHECK(acme_problem(p1, strlen(p1), out, 8) == 0 && strlen(out) == 7);
}

static void test_not_running(void)
{
	char out[ACME_KEYAUTH_MAX];

	CHECK(acme_challenge("abc", out, sizeof(out)) == 0);
	CHECK(acme_challenge("", out, sizeof(out)) == 0);
	CHECK(acme_take_updated() == 0);
	acme_want("app.example.org"); /* ignored, no crash */
	acme_stop();
	acme_stop();
}

int main(void)
{
	RUN(test_b64url);
	RUN(test_thumbprint_rfc7638);
	RUN(test_jwk_known_key);
	RUN(test_es256);
	RUN(test_jws_structure);
	RUN(test_renew_at);
	RUN(test_backoff);
	RUN(test_rate_pause);
	RUN(test_problem);
	RUN(test_not_running);
	UNIT_END();
}
