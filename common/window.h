/*
 * common/window.h - receive windows that grow with the path (flow control
 * auto-tuning, as TCP and HTTP/2 stacks do).
 *
 * A stream's window starts at the session's (WELCOME.window): enough on a
 * short path, but a stream moves at most one window per round trip.  So a
 * receiver measures: while data comes in it sends a PING tagged as a probe
 * and counts each stream's bytes until the PONG is back, one round trip
 * later.  A stream that moved half its window or more in that time, while
 * its consumer kept up, is limited by the window: the window doubles, up to
 * WINDOW_MAX.  Each session's streams grow within its share of
 * WINDOW_BUDGET (the edge divides it among its agents, and an agent's
 * part among its sessions, never below WINDOW_MAX; the agent has one), so
 * one agent's fast streams cannot hold it all while other agents' stay
 * small.  A session that comes while another holds more than its new
 * share still gets its own: the growth of all streams together may then
 * pass the budget, up to WINDOW_LIMIT, so memory stays bounded whatever the
 * number of streams and sessions.
 * PING/PONG is in every peer already: no protocol change.
 */
#ifndef RELAIS_COMMON_WINDOW_H
#define RELAIS_COMMON_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#define WINDOW_MAX    (16u * 1024u * 1024u) /* one stream's largest window */
#define WINDOW_BUDGET (64u * 1024u * 1024u) /* what the sessions' shares divide */
#define WINDOW_LIMIT  (2 * WINDOW_BUDGET)   /* all growth in one process */
#define PROBE_TAG     (1ull << 63)          /* PING values of probes */
#define PROBE_GAP_US  10000u                /* from one probe's answer to the next */

/** A session's round-trip probe. */
struct probe {
	uint64_t sent_us; /* 0: none in flight */
	uint64_t next_us; /* no new probe before */
	uint32_t seq;     /* which probe streams count their bytes for */
};

/**
 * Stream data arrived at now_us: returns the PING value to send now to
 * start a probe, or 0.
 */
uint64_t probe_start(struct probe *p, uint64_t now_us);

/** A PONG with this value: 1 if it ends our probe (check the windows now). */
int probe_answer(struct probe *p, uint64_t value, uint64_t now_us);

/**
 * Count n bytes received by a stream (its seq and bytes fields) for the
 * probe in flight.
 */
void probe_count(const struct probe *p, uint32_t *seq, uint64_t *bytes, size_t n);

/** Growth granted to one session's streams. */
struct window_pool {
	size_t granted;
};

/** A share of the budget when n sessions (or agents) use it: an equal part,
 * and never less than one stream's largest window. */
size_t window_share(size_t n);

/**
 * At a probe's end, for a stream of pool's session that received rtt_bytes
 * during it and holds backlog bytes its consumer has not taken yet: the
 * bytes its window (*window) grows by, 0 to keep it.  The pool's growth
 * stays within share (window_share()), all growth within WINDOW_LIMIT.
 */
uint32_t window_grow(uint32_t *window, uint64_t rtt_bytes, uint64_t backlog,
                     struct window_pool *pool, size_t share);

/** A stream ends: give its growth (window - initial) back to the budget
 * and to its session's pool (NULL once the session is gone). */
void window_release(uint32_t window, uint32_t initial, struct window_pool *pool);

/** Growth currently granted, all streams together. */
size_t window_granted(void);

#endif
