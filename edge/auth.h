/*
 * edge/auth.h - HTTP Basic authentication (RFC 7617) for access lists with
 * users: credentials checked against argon2id hashes on the event loop,
 * bounded so that guessing cannot stall it.
 *
 * A hash check costs a few milliseconds (config.c bounds a hash's cost), so:
 * credentials that passed are remembered (a keyed BLAKE2b of the hash and
 * the credentials, AUTH_REMEMBER_S after their last use, AUTH_REMEMBER_MAX_S
 * at most) and cost nothing again; wrong tries (checked ones: a malformed
 * field is answered, not counted) are counted per client (an IPv4 address
 * or an IPv6 /64, each in a way of its own of a set-associative table of
 * AUTH_FAIL_SLOTS, so no client gets or clears another's count),
 * AUTH_FAIL_MAX per AUTH_FAIL_WINDOW_S; and all clients together get
 * AUTH_CHECKS_PER_S checks a second.  Past either limit the answer comes
 * without a check.
 */
#ifndef RELAIS_EDGE_AUTH_H
#define RELAIS_EDGE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "../common/addr.h"
#include "../common/config.h"
#include "http1.h"

#define AUTH_REMEMBER_S     600   /* after the last use */
#define AUTH_REMEMBER_MAX_S 43200 /* after the check, however used */
#define AUTH_FAIL_MAX       10
#define AUTH_FAIL_WINDOW_S  60
#define AUTH_FAIL_SLOTS     4096
#define AUTH_CHECKS_PER_S   20

enum auth_result {
	AUTH_OK,        /* a user of a->users, with its password */
	AUTH_MISSING,   /* no Authorization: Basic: ask (401) */
	AUTH_FAILED,    /* wrong name or password, or malformed: 401 */
	AUTH_THROTTLED, /* this client's wrong tries are used up: 429, nothing checked */
	AUTH_BUSY,      /* the checks of this second are used up: 429, nothing checked */
};

/**
 * Check request h's Authorization against a->users for peer at now_us.  On
 * AUTH_OK the user's name is copied to user[0..cap) (for the log).
 */
enum auth_result auth_basic(const struct edge_access *a, const struct http1_head *h,
                            const struct addr *peer, uint64_t now_us, char *user, size_t cap);

/** 1 when h carries an Authorization field of the Basic scheme. */
int auth_has_basic(const struct http1_head *h);

#endif
