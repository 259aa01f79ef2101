/* tests/unit/common/window.c - round-trip probes and window growth. */
#include <stdint.h>

#include "../../../common/window.h"
#include "../unit.h"

#define MiB (1024u * 1024u)

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
	CHECK(window_grow(&w, MiB / 2 - 1, 0) == 0 && w == MiB);
	/* a window per round trip, but the consumer is behind */
	CHECK(window_grow(&w, MiB, MiB / 8 + 1) == 0 && w == MiB);
	/* a window per round trip and the consumer keeps up: it doubles */
	CHECK(window_grow(&w, MiB, 0) == MiB && w == 2 * MiB);
	CHECK(window_granted() == MiB);
	window_release(w, MiB);
	CHECK(window_granted() == 0);
}

static void test_capped_per_stream(void)
{
	uint32_t w = MiB, v = 12 * MiB;

	for (int i = 0; i < 10; i++)
		window_grow(&w, w, 0);
	CHECK(w == WINDOW_MAX);
	CHECK(window_grow(&w, w, 0) == 0 && w == WINDOW_MAX);
	/* from an odd size the last step stops at the cap */
	CHECK(window_grow(&v, v, 0) == WINDOW_MAX - 12 * MiB && v == WINDOW_MAX);
	window_release(v, 12 * MiB);
	window_release(w, MiB);
	CHECK(window_granted() == 0);
}

static void test_budget_for_all_streams(void)
{
	uint32_t w[8];
	size_t i;

	for (i = 0; i < 8; i++) {
		w[i] = MiB;
		while (window_grow(&w[i], w[i], 0))
			;
	}
	/* four streams reach 16 MiB (60 MiB of growth); then the 64 MiB cap */
	CHECK(window_granted() <= WINDOW_BUDGET);
	CHECK(w[0] == WINDOW_MAX && w[3] == WINDOW_MAX);
	CHECK(w[7] == MiB);
	/* a stream that ends gives its growth back: another may grow */
	window_release(w[0], MiB);
	CHECK(window_grow(&w[7], w[7], 0) == MiB);
	for (i = 1; i < 8; i++)
		window_release(w[i], MiB);
	CHECK(window_granted() == 0);
}

int main(void)
{
	RUN(test_probe_cycle);
	RUN(test_grows_only_when_the_window_limits);
	RUN(test_capped_per_stream);
	RUN(test_budget_for_all_streams);
	UNIT_END();
}
