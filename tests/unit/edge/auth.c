/*
 * tests/unit/edge/auth.c - HTTP Basic authentication (edge/auth.c): answers,
 * remembered credentials, and the rations on wrong tries and on checks, with
 * the clock in the test's hands.
 */
#include "edge/auth.h"

#include <sodium.h>
#include <stdio.h>

#include "tests/unit/unit.h"

#define S 1000000ull /* one second, in microseconds */

static char hash[crypto_pwhash_STRBYTES];
static struct edge_user users[2];
static struct edge_access acl = {.users = users, .nusers = 2};
static struct http1_head head;

/* A head whose one field is "Authorization: value" (NULL: no field). */
static const struct http1_head *with(const char *value)
{
	memset(&head, 0, sizeof(head));
	if (value) {
		head.headers[0] = (struct http1_header){"Authorization", 13, value, strlen(value)};
		head.nheaders = 1;
	}
	return &head;
}

static const struct http1_head *basic(const char *cred)
{
	static char v[256];
	char b64[200];

	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)cred, strlen(cred),
	                  sodium_base64_VARIANT_ORIGINAL);
	snprintf(v, sizeof(v), "Basic %s", b64);
	return with(v);
}

static struct addr client(int n)
{
	struct addr a;
	char text[32];

	snprintf(text, sizeof(text), "198.51.%d.%d:1", n / 256, n % 256);
	CHECK(addr_parse(text, &a) == 0);
	return a;
}

static enum auth_result try(const struct http1_head *h, int who, uint64_t now)
{
	struct addr a = client(who);
	char user[80] = "";

	return auth_basic(&acl, h, &a, now, user, sizeof(user));
}

static void test_answers(void)
{
	uint64_t t = 1000 * S;
	char user[80] = "";
	struct addr a = client(1);

	CHECK(try(with(NULL), 1, t) == AUTH_MISSING);
	CHECK(try(with("Bearer abc"), 1, t) == AUTH_FAILED);
	CHECK(try(with("Basic !!!"), 1, t) == AUTH_FAILED);
	CHECK(try(basic("alice"), 1, t) == AUTH_FAILED); /* no colon */
	CHECK(try(basic("alice:hunter3"), 1, t) == AUTH_FAILED);
	CHECK(try(basic("mallory:hunter2"), 1, t) == AUTH_FAILED);
	CHECK(auth_basic(&acl, basic("alice:hunter2"), &a, t, user, sizeof(user)) == AUTH_OK);
	CHECK(strcmp(user, "alice") == 0);
	CHECK(try(with("basic  YWxpY2U6aHVudGVyMg=="), 1, t) == AUTH_OK); /* any case, spaces */
	/* two Authorization fields: which one would the service have seen? */
	head.headers[1] = head.headers[0];
	head.nheaders = 2;
	CHECK(try(&head, 1, t) == AUTH_FAILED);
	CHECK(auth_has_basic(basic("x:y")) && !auth_has_basic(with("Bearer x")) &&
	      !auth_has_basic(with(NULL)));
}

/* Ten checked wrong tries, then nothing is checked for a minute, not even
 * the right password; malformed fields are not counted; others go on. */
static void test_wrong_tries(void)
{
	uint64_t t = 2000 * S;

	for (int i = 0; i < 20; i++)
		CHECK(try(with("Basic !!!"), 2, t) == AUTH_FAILED);
	for (int i = 0; i < AUTH_FAIL_MAX; i++)
		CHECK(try(basic("alice:wrong"), 2, t + (uint64_t)i * S) == AUTH_FAILED);
	CHECK(try(basic("alice:hunter2"), 2, t + 11 * S) == AUTH_THROTTLED);
	CHECK(try(basic("alice:wrong"), 2, t + 12 * S) == AUTH_THROTTLED);
	CHECK(try(basic("alice:hunter2"), 3, t + 12 * S) == AUTH_OK);
	/* the window counts from the first wrong try */
	CHECK(try(basic("alice:hunter2"), 2, t + (AUTH_FAIL_WINDOW_S + 1) * S) == AUTH_OK);
}

/* AUTH_CHECKS_PER_S checks a second in all; remembered credentials need none. */
static void test_checks_per_second(void)
{
	uint64_t t = 3000 * S;
	int busy = 0;

	CHECK(try(basic("bob:pw2"), 4, t) == AUTH_OK); /* checked, then remembered */
	for (int i = 0; i < AUTH_CHECKS_PER_S + 5; i++)
		busy += try(basic("bob:nope"), 100 + i, t + 1) == AUTH_BUSY;
	CHECK(busy == 6); /* bob's check above came from the same budget */
	CHECK(try(basic("bob:pw2"), 5, t + 2) == AUTH_OK);          /* remembered: no check */
	CHECK(try(basic("alice:hunter2"), 6, t + 2) == AUTH_BUSY);  /* a login that needs one */
	CHECK(try(basic("bob:nope"), 7, t + 2 * S) == AUTH_FAILED); /* refilled */
	/* remembered for AUTH_REMEMBER_S, then checked again */
	for (int i = 0; i < AUTH_CHECKS_PER_S + 5; i++)
		try(basic("bob:nope"), 300 + i, t + 3 * S);
	CHECK(try(basic("bob:pw2"), 8, t + 3 * S) == AUTH_OK);
	CHECK(try(basic("bob:pw2"), 8, t + 3 * S + (AUTH_REMEMBER_S + 1) * S) == AUTH_OK);
	for (int i = 0; i < AUTH_CHECKS_PER_S + 5; i++)
		try(basic("bob:nope"), 600 + i, t + (AUTH_REMEMBER_S + 10) * S);
	CHECK(try(basic("bob:pw2"), 9, t + (AUTH_REMEMBER_S + 10) * S) == AUTH_OK); /* kept anew */
	CHECK(try(basic("alice:hunter2"), 9, t + (AUTH_REMEMBER_S + 10) * S) == AUTH_BUSY);
	CHECK(try(basic("alice:hunter2"), 9, t + (AUTH_REMEMBER_S + 12) * S) == AUTH_OK);
}

/* A remembered login in use stays remembered (AUTH_REMEMBER_S after its last
 * use, up to AUTH_REMEMBER_MAX_S), needing no check while others use up the
 * checks of every second. */
static void test_remembered_while_used(void)
{
	uint64_t t = 10000 * S;

	CHECK(try(basic("bob:pw2"), 20, t) == AUTH_OK);
	for (uint64_t m = 5; m <= 60; m += 5) {
		uint64_t now = t + m * 60 * S;

		for (int i = 0; i < AUTH_CHECKS_PER_S + 1; i++)
			try(basic("bob:nope"), 1000 + (int)m * 30 + i, now);
		CHECK(try(basic("alice:hunter2"), 21, now) == AUTH_BUSY);
		CHECK(try(basic("bob:pw2"), 20, now) == AUTH_OK);
	}
	/* used every 9 minutes, but never past AUTH_REMEMBER_MAX_S after the check */
	for (uint64_t now = t + 69 * 60 * S; now < t + (AUTH_REMEMBER_MAX_S - 60) * S;
	     now += 540 * S)
		CHECK(try(basic("bob:pw2"), 20, now) == AUTH_OK);
	for (int i = 0; i < AUTH_CHECKS_PER_S + 1; i++)
		try(basic("bob:nope"), 3000 + i, t + (AUTH_REMEMBER_MAX_S + 60) * S);
	CHECK(try(basic("bob:pw2"), 20, t + (AUTH_REMEMBER_MAX_S + 60) * S) == AUTH_BUSY);
}

int main(void)
{
	static char hash2[crypto_pwhash_STRBYTES];

	CHECK(sodium_init() >= 0);
	/* cheap hashes: the cost of a check is config.c's business */
	CHECK(crypto_pwhash_str(hash, "hunter2", 7, 1, 8192) == 0);
	CHECK(crypto_pwhash_str(hash2, "pw2", 3, 1, 8192) == 0);
	users[0] = (struct edge_user){"alice", hash};
	users[1] = (struct edge_user){"bob", hash2};
	RUN(test_answers);
	RUN(test_wrong_tries);
	RUN(test_checks_per_second);
	RUN(test_remembered_while_used);
	UNIT_END();
}
