/*
 * edge/auth.c - HTTP Basic authentication for access lists (see auth.h).
 */
#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clients.h"

#define CACHE_SETS 64 /* credentials that passed: CACHE_SETS sets of CACHE_WAYS */
#define CACHE_WAYS 4
#define FAIL_WAYS  4    /* wrong tries: AUTH_FAIL_SLOTS / FAIL_WAYS sets */
#define CRED_MAX   1200 /* decoded "name:password": 64 + 1 + 1024 and more */

struct passed {
	uint8_t digest[crypto_generichash_BYTES];
	uint64_t until_us; /* AUTH_REMEMBER_S after the last use */
	uint64_t limit_us; /* and never past AUTH_REMEMBER_MAX_S after the check */
};

/* One client's wrong tries since since_us (n 0: a free way). */
struct fails {
	uint8_t key[CLIENT_KEY_LEN];
	uint64_t since_us;
	unsigned n;
};

static struct passed cache[CACHE_SETS][CACHE_WAYS];
static struct fails fails[AUTH_FAIL_SLOTS / FAIL_WAYS][FAIL_WAYS];
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

/* 1 when digest d passed and is still remembered; a use keeps it longer. */
static int cache_has(const uint8_t *d, uint64_t now_us)
{
	struct passed *set = cache[d[0] % CACHE_SETS];

	for (int i = 0; i < CACHE_WAYS; i++)
		if (set[i].until_us > now_us &&
		    sodium_memcmp(set[i].digest, d, crypto_generichash_BYTES) == 0) {
			set[i].until_us = now_us + (uint64_t)AUTH_REMEMBER_S * 1000000u;
			if (set[i].until_us > set[i].limit_us)
				set[i].until_us = set[i].limit_us;
			return 1;
		}
	return 0;
}

/* Remember d in place of the way that expires first. */
static void cache_put(const uint8_t *d, uint64_t now_us)
{
	struct passed *set = cache[d[0] % CACHE_SETS], *w = &set[0];

	for (int i = 1; i < CACHE_WAYS; i++)
		if (set[i].until_us < w->until_us)
			w = &set[i];
	memcpy(w->digest, d, crypto_generichash_BYTES);
	w->until_us = now_us + (uint64_t)AUTH_REMEMBER_S * 1000000u;
	w->limit_us = now_us + (uint64_t)AUTH_REMEMBER_MAX_S * 1000000u;
}

static int fails_expired(const struct fails *f, uint64_t now_us)
{
	return f->n == 0 || now_us - f->since_us > (uint64_t)AUTH_FAIL_WINDOW_S * 1000000u;
}

/* The set of ways key's wrong tries may be counted in. */
static struct fails *fails_set(const uint8_t *key)
{
	return fails[client_hash(key, CLIENT_KEY_LEN) % (AUTH_FAIL_SLOTS / FAIL_WAYS)];
}

/* key's wrong tries in its window: its own way of its set, or 0. */
static unsigned fails_count(const uint8_t *key, uint64_t now_us)
{
	struct fails *set = fails_set(key);

	for (int i = 0; i < FAIL_WAYS; i++)
		if (!fails_expired(&set[i], now_us) && memcmp(set[i].key, key, CLIENT_KEY_LEN) == 0)
			return set[i].n;
	return 0;
}

/*
 * One more wrong try of key: counted in a way of its own, tagged with the
 * key, so no client ever gets or clears another's count.  A set whose ways
 * are all in use gives up the one whose window started first.
 */
static void fails_add(const uint8_t *key, uint64_t now_us)
{
	struct fails *set = fails_set(key), *w = NULL;

	for (int i = 0; i < FAIL_WAYS && !w; i++)
		if (!fails_expired(&set[i], now_us) && memcmp(set[i].key, key, CLIENT_KEY_LEN) == 0)
			w = &set[i];
	for (int i = 0; i < FAIL_WAYS && !w; i++)
		if (fails_expired(&set[i], now_us))
			w = &set[i];
	if (!w) {
		w = &set[0];
		for (int i = 1; i < FAIL_WAYS; i++)
			if (set[i].since_us < w->since_us)
				w = &set[i];
	}
	if (fails_expired(w, now_us) || memcmp(w->key, key, CLIENT_KEY_LEN) != 0) {
		memcpy(w->key, key, CLIENT_KEY_LEN);
		w->since_us = now_us;
		w->n = 0;
	}
	w->n++;
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

static int is_authorization(const struct http1_header *f)
{
	return f->name_len == 13 && strncasecmp(f->name, "Authorization", 13) == 0;
}

static int is_basic(const struct http1_header *f)
{
	return f->value_len >= 6 && strncasecmp(f->value, "Basic", 5) == 0 &&
	       (f->value[5] == ' ' || f->value[5] == '\t');
}

int auth_has_basic(const struct http1_head *h)
{
	for (size_t i = 0; i < h->nheaders; i++)
		if (is_authorization(&h->headers[i]) && is_basic(&h->headers[i]))
			return 1;
	return 0;
}

/* The one Authorization field of h, or NULL (none, or more than one). */
static const struct http1_header *authorization(const struct http1_head *h, int *count)
{
	const struct http1_header *found = NULL;

	*count = 0;
	for (size_t i = 0; i < h->nheaders; i++)
		if (is_authorization(&h->headers[i])) {
			found = &h->headers[i];
			(*count)++;
		}
	return *count == 1 ? found : NULL;
}

/* Decode "Basic <base64>" into cred[0..CRED_MAX); its length, or -1. */
static long decode_basic(const struct http1_header *f, char *cred)
{
	const char *v = f->value + 5, *end = f->value + f->value_len;
	size_t len;

	if (!is_basic(f))
		return -1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	if (sodium_base642bin((unsigned char *)cred, CRED_MAX - 1, v, (size_t)(end - v), NULL, &len,
	                      NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	cred[len] = '\0';
	return memchr(cred, '\0', len) != NULL ? -1 : (long)len;
}

/* 1 when password matches hash.  An unknown name is checked too, against
 * another user's hash of the same cost (config.c: one cost per list), so
 * that the time taken does not tell names apart. */
static int password_ok(const char *hash, const char *password, size_t len)
{
	return crypto_pwhash_str_verify(hash, password, (unsigned long long)len) == 0;
}

/* 1 when hash + cred passed before and is remembered; its digest in d. */
static int remembered(const char *hash, const char *cred, size_t len, uint8_t *d, uint64_t now_us)
{
	digest_of(hash, cred, len, d);
	return cache_has(d, now_us);
}

enum auth_result auth_basic(const struct edge_access *a, const struct http1_head *h,
                            const struct addr *peer, uint64_t now_us, char *user, size_t cap)
{
	const struct http1_header *f;
	const struct edge_user *u = NULL;
	enum auth_result r;
	uint8_t key[CLIENT_KEY_LEN];
	char cred[CRED_MAX];
	uint8_t d[crypto_generichash_BYTES];
	const char *colon;
	size_t nlen;
	long len;
	int count;

	f = authorization(h, &count);
	if (count == 0)
		return AUTH_MISSING;
	len = f ? decode_basic(f, cred) : -1;
	colon = len > 0 ? memchr(cred, ':', (size_t)len) : NULL;
	nlen = colon ? (size_t)(colon - cred) : 0;
	for (size_t i = 0; colon && i < a->nusers && !u; i++)
		if (strlen(a->users[i].name) == nlen && memcmp(a->users[i].name, cred, nlen) == 0)
			u = &a->users[i];
	/* A client past its own wrong tries gets nothing checked, not even
	 * against the remembered credentials: guessing stays throttled. */
	client_key(peer, key);
	if (fails_count(key, now_us) >= AUTH_FAIL_MAX) {
		r = AUTH_THROTTLED;
	} else if (!colon) {
		/* not "Basic base64(name:password)": no guess, so no check and
		 * no count (it is free to send) */
		r = AUTH_FAILED;
	} else if (u && remembered(u->hash, cred, (size_t)len, d, now_us)) {
		r = AUTH_OK;
	} else if (!take_token(now_us)) {
		r = AUTH_BUSY;
	} else if (password_ok(u ? u->hash : a->users[0].hash, colon + 1,
	                       (size_t)(cred + len - colon - 1)) &&
	           u) {
		cache_put(d, now_us);
		r = AUTH_OK;
	} else {
		fails_add(key, now_us);
		r = AUTH_FAILED;
	}
	sodium_memzero(cred, sizeof(cred));
	if (r == AUTH_OK)
		snprintf(user, cap, "%s", u->name);
	return r;
}
