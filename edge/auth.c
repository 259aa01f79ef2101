/*
 * edge/auth.c - HTTP Basic authentication for access lists (see auth.h).
 */
#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clients.h"

#define CACHE_SLOTS 256  /* credentials that passed */
#define FAIL_SLOTS  1024 /* clients with wrong tries */
#define CRED_MAX    512  /* decoded "name:password" */

struct passed {
	uint8_t digest[crypto_generichash_BYTES];
	uint64_t until_us;
};

struct fails {
	uint8_t key[CLIENT_KEY_LEN];
	uint64_t since_us;
	unsigned n;
};

static struct passed cache[CACHE_SLOTS];
static struct fails fails[FAIL_SLOTS];
static uint8_t cache_key[crypto_generichash_KEYBYTES];
static int cache_key_set;
static double tokens = AUTH_CHECKS_PER_S;
static uint64_t tokens_us;

/* The keyed digest remembered for hash + credentials. */
static void digest_of(const char *hash, const char *cred, size_t len, uint8_t out[32])
{
	crypto_generichash_state st;

	if (!cache_key_set) {
		randombytes_buf(cache_key, sizeof(cache_key));
		cache_key_set = 1;
	}
	crypto_generichash_init(&st, cache_key, sizeof(cache_key), crypto_generichash_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)hash, strlen(hash) + 1);
	crypto_generichash_update(&st, (const uint8_t *)cred, len);
	crypto_generichash_final(&st, out, crypto_generichash_BYTES);
}

static struct fails *fails_of(const struct addr *peer, uint64_t now_us)
{
	uint8_t key[CLIENT_KEY_LEN];
	struct fails *f;

	client_key(peer, key);
	f = &fails[client_hash(key, sizeof(key)) % FAIL_SLOTS];
	if (memcmp(f->key, key, sizeof(key)) != 0 ||
	    now_us - f->since_us > (uint64_t)AUTH_FAIL_WINDOW_S * 1000000u) {
		memcpy(f->key, key, sizeof(key));
		f->since_us = now_us;
		f->n = 0;
	}
	return f;
}

/* One hash check from the budget shared by all clients; 0 when spent. */
static int take_token(uint64_t now_us)
{
	tokens += (double)(now_us - tokens_us) * AUTH_CHECKS_PER_S / 1e6;
	tokens_us = now_us;
	if (tokens > AUTH_CHECKS_PER_S)
		tokens = AUTH_CHECKS_PER_S;
	if (tokens < 1)
		return 0;
	tokens -= 1;
	return 1;
}

/* The one Authorization field of h, or NULL (none, or more than one). */
static const struct http1_header *authorization(const struct http1_head *h, int *count)
{
	const struct http1_header *found = NULL;

	*count = 0;
	for (size_t i = 0; i < h->nheaders; i++)
		if (h->headers[i].name_len == 13 &&
		    strncasecmp(h->headers[i].name, "Authorization", 13) == 0) {
			found = &h->headers[i];
			(*count)++;
		}
	return *count == 1 ? found : NULL;
}

/* Decode "Basic <base64>" into cred[0..CRED_MAX); its length, or -1. */
static long decode_basic(const struct http1_header *f, char *cred)
{
	const char *v = f->value, *end = f->value + f->value_len;
	size_t len;

	if (f->value_len < 6 || strncasecmp(v, "Basic", 5) != 0 || (v[5] != ' ' && v[5] != '\t'))
		return -1;
	for (v += 5; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	if (sodium_base642bin((unsigned char *)cred, CRED_MAX - 1, v, (size_t)(end - v), NULL, &len,
	                      NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	cred[len] = '\0';
	return memchr(cred, '\0', len) != NULL ? -1 : (long)len;
}

enum auth_result auth_basic(const struct edge_access *a, const struct http1_head *h,
                            const struct addr *peer, uint64_t now_us, char *user, size_t cap)
{
	const struct http1_header *f;
	const struct edge_user *u = NULL;
	struct passed *p;
	struct fails *fl;
	char cred[CRED_MAX];
	uint8_t d[crypto_generichash_BYTES];
	const char *colon;
	long len;
	int count, ok;

	f = authorization(h, &count);
	if (count == 0)
		return AUTH_MISSING;
	len = f ? decode_basic(f, cred) : -1;
	colon = len > 0 ? memchr(cred, ':', (size_t)len) : NULL;
	if (colon) {
		for (size_t i = 0; i < a->nusers && !u; i++)
			if (strlen(a->users[i].name) == (size_t)(colon - cred) &&
			    memcmp(a->users[i].name, cred, (size_t)(colon - cred)) == 0)
				u = &a->users[i];
	}
	/* A client past its wrong tries gets nothing checked, not even
	 * against the remembered credentials: guessing stays throttled. */
	fl = fails_of(peer, now_us);
	if (fl->n >= AUTH_FAIL_MAX) {
		sodium_memzero(cred, sizeof(cred));
		return AUTH_THROTTLED;
	}
	if (!colon) { /* not "Basic base64(name:password)" */
		sodium_memzero(cred, sizeof(cred));
		fl->n++;
		return AUTH_FAILED;
	}
	if (u) {
		digest_of(u->hash, cred, (size_t)len, d);
		p = &cache[d[0] % CACHE_SLOTS];
		if (p->until_us > now_us && sodium_memcmp(p->digest, d, sizeof(d)) == 0) {
			snprintf(user, cap, "%s", u->name);
			sodium_memzero(cred, sizeof(cred));
			return AUTH_OK;
		}
	}
	if (!take_token(now_us)) {
		sodium_memzero(cred, sizeof(cred));
		return AUTH_THROTTLED;
	}
	/* An unknown name costs a check too: the time taken does not tell
	 * which names exist. */
	ok = crypto_pwhash_str_verify(u ? u->hash : a->users[0].hash, colon + 1,
	                              (unsigned long long)(cred + len - colon - 1)) == 0 &&
	     u != NULL;
	sodium_memzero(cred, sizeof(cred));
	if (!ok) {
		fl->n++;
		return AUTH_FAILED;
	}
	p = &cache[d[0] % CACHE_SLOTS];
	memcpy(p->digest, d, sizeof(d));
	p->until_us = now_us + (uint64_t)AUTH_REMEMBER_S * 1000000u;
	snprintf(user, cap, "%s", u->name);
	return AUTH_OK;
}
