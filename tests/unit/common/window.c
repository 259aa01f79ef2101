/* tests/unit/common/window.c - round-trip probes and window growth. */
#include <stdint.h>

#include "../../../common/window.h"
#include "../unit.h"

#define MiB (1024u * 1024u)
#define ALL WINDOW_BUDGET /* one session: the whole budget */

static struct window_pool pool; /* the session of the single-session tests */

static void test_probe_cycle(void)
{
	struct probe p = {0};
	uint32_t seq = 0;
	uint64_t bytes = 0, v;

	/* no probe in flight: nothing is counted */
	probe_count(&p, &seq, &bytes, 100);
	CHECK(bytes == 0);
	v = probe_start(&p, 1000);
	CHECK(v & PROBE_TAG);
	/* one at a time */
	CHECK(probe_start(&p, 1001) == 0);
	probe_count(&p, &seq, &bytes, 300);
	probe_count(&p, &seq, &bytes, 200);
	CHECK(bytes == 500 && seq == p.seq);
	/* a keepalive PONG (no tag) or a stale probe value ends nothing */
	CHECK(!probe_answer(&p, 1000, 2000));
	CHECK(!probe_answer(&p, v + 1, 2000));
	CHECK(probe_answer(&p, v, 2000));
	CHECK(!probe_answer(&p, v, 2001)); /* answered once */
	/* the next probe waits PROBE_GAP_US after the answer */
	CHECK(probe_start(&p, 2000 + PROBE_GAP_US - 1) == 0);
	v = probe_start(&p, 2000 + PROBE_GAP_US);
	CHECK(v != 0);
	/* a stream's count starts again with each probe */
	probe_count(&p, &seq, &bytes, 7);
	CHECK(bytes == 7 && seq == p.seq);
}

static void test_grows_only_when_the_window_limits(void)
{
	uint32_t w = MiB;

	/* under half a window in a round trip: something else limits it */
	CHECK(window_grow(&w, MiB / 2 - 1, 0, &pool, ALL) == 0 && w == MiB);
	/* a window per round trip, but the consumer is behind */
	CHECK(window_grow(&w, MiB, MiB / 8 + 1, &pool, ALL) == 0 && w == MiB);
	/* a window per round trip and the consumer keeps up: it doubles */
	CHECK(window_grow(&w, MiB, 0, &pool, ALL) == MiB && w == 2 * MiB);
	CHECK(window_granted() == MiB && pool.granted == MiB);
	window_release(w, MiB, &pool);
	CHECK(window_granted() == 0 && pool.granted == 0);
}

static void test_capped_per_stream(void)
{
	uint32_t w = MiB, v = 12 * MiB;

	for (int i = 0; i < 10; i++)
		window_grow(&w, w, 0, &pool, ALL);
	CHECK(w == WINDOW_MAX);
	CHECK(window_grow(&w, w, 0, &pool, ALL) == 0 && w == WINDOW_MAX);
	/* from an odd size the last step stops at the cap */
	CHECK(window_grow(&v, v, 0, &pool, ALL) == WINDOW_MAX - 12 * MiB && v == WINDOW_MAX);
	window_release(v, 12 * MiB, &pool);
	window_release(w, MiB, &pool);
	CHECK(window_granted() == 0);
}

static void test_budget_for_all_streams(void)
{
	uint32_t w[8];
	size_t i;

	for (i = 0; i < 8; i++) {
		w[i] = MiB;
		while (window_grow(&w[i], w[i], 0, &pool, ALL))
			;
	}
	/* four streams reach 16 MiB (60 MiB of growth); then a lone session's
	 * share, the whole 64 MiB budget */
	CHECK(window_granted() <= WINDOW_BUDGET && pool.granted == window_granted());
	CHECK(w[0] == WINDOW_MAX && w[3] == WINDOW_MAX);
	CHECK(w[7] == MiB);
	/* a stream that ends gives its growth back: another may grow */
	window_release(w[0], MiB, &pool);
	CHECK(window_grow(&w[7], w[7], 0, &pool, ALL) == MiB);
	for (i = 1; i < 8; i++)
		window_release(w[i], MiB, &pool);
	CHECK(window_granted() == 0);
}

/* Two sessions: each grows within half the budget, whatever the other does. */
static void test_share_per_session(void)
{
	struct window_pool a = {0}, b = {0};
	size_t half = window_share(2);
	uint32_t wa[4], wb[4];
	size_t i;

	CHECK(window_share(0) == WINDOW_BUDGET && window_share(1) == WINDOW_BUDGET);
	CHECK(half == WINDOW_BUDGET / 2);
	CHECK(window_share(8) == WINDOW_MAX && window_share(1000) == WINDOW_MAX);
	for (i = 0; i < 4; i++) {
		wa[i] = MiB;
		while (window_grow(&wa[i], wa[i], 0, &a, half))
			;
	}
	/* a's first stream reaches 16 MiB (15 of growth), its second 16 (30),
	 * its third and fourth 2 each (32): the share is full */
	CHECK(wa[0] == WINDOW_MAX && wa[1] == WINDOW_MAX && wa[2] == 2 * MiB && wa[3] == 2 * MiB);
	CHECK(a.granted == 32 * MiB && a.granted <= half);
	/* b grows as far, with a holding its half */
	for (i = 0; i < 4; i++) {
		wb[i] = MiB;
		while (window_grow(&wb[i], wb[i], 0, &b, half))
			;
	}
	CHECK(wb[0] == WINDOW_MAX && wb[1] == WINDOW_MAX && b.granted == a.granted);
	CHECK(window_granted() == a.granted + b.granted);
	/* a stream of a session that is gone gives back to the budget only */
	window_release(wa[0], MiB, NULL);
	CHECK(a.granted == 32 * MiB && window_granted() == 49 * MiB);
	for (i = 1; i < 4; i++)
		window_release(wa[i], MiB, &a);
	for (i = 0; i < 4; i++)
		window_release(wb[i], MiB, &b);
	CHECK(a.granted == 15 * MiB && b.granted == 0 && window_granted() == 0);
}

/* A session that comes while another holds the whole budget still gets its
 * share; the other, over its new share, grows no more.  However many
 * sessions, all growth stays within WINDOW_LIMIT. */
static void test_late_session_gets_its_share(void)
{
	struct window_pool a = {0}, b = {0}, many[10] = {{0}};
	uint32_t wa[8], wb[4], wm[10];
	size_t i;

	for (i = 0; i < 8; i++) { /* a alone: the whole budget */
		wa[i] = MiB;
		while (window_grow(&wa[i], wa[i], 0, &a, window_share(1)))
			;
	}
	CHECK(a.granted > WINDOW_BUDGET - MiB && a.granted <= WINDOW_BUDGET);
	for (i = 0; i < 4; i++) { /* then b: half each */
		wb[i] = MiB;
		while (window_grow(&wb[i], wb[i], 0, &b, window_share(2)))
			;
	}
	CHECK(b.granted == 32 * MiB);
	CHECK(window_grow(&wa[7], wa[7], 0, &a, window_share(2)) == 0);
	CHECK(window_granted() == a.granted + b.granted);
	/* ten more sessions, at a 16 MiB window each: the limit stops them */
	for (i = 0; i < 10; i++) {
		wm[i] = MiB;
		while (window_grow(&wm[i], wm[i], 0, &many[i], window_share(12)))
			;
	}
	CHECK(window_granted() <= WINDOW_LIMIT && window_granted() > WINDOW_LIMIT - 16 * MiB);
	CHECK(wm[0] == WINDOW_MAX && wm[9] < WINDOW_MAX);
	for (i = 0; i < 8; i++)
		window_release(wa[i], MiB, &a);
	for (i = 0; i < 4; i++)
		window_release(wb[i], MiB, &b);
	for (i = 0; i < 10; i++)
		window_release(wm[i], MiB, &many[i]);
	CHECK(window_granted() == 0 && a.granted == 0 && b.granted == 0 && many[9].granted == 0);
}

int main(void)
{
	RUN(test_probe_cycle);
	RUN(test_grows_only_when_the_window_limits);
	RUN(test_capped_per_stream);
	RUN(test_share_per_session);
	RUN(test_late_session_gets_its_share);
	RUN(test_budget_for_all_streams);
	UNIT_END();
}
