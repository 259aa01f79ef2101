/*
 * common/window.c - receive window auto-tuning (see window.h).
 */
#include "window.h"

static size_t granted;

uint64_t probe_start(struct probe *p, uint64_t now_us)
{
	if (p->sent_us || now_us < p->next_us)
		return 0;
	p->sent_us = now_us ? now_us : 1;
	p->seq++;
	return PROBE_TAG | p->seq;
}

int probe_answer(struct probe *p, uint64_t value, uint64_t now_us)
{
	if (!p->sent_us || value != (PROBE_TAG | p->seq))
		return 0;
	p->sent_us = 0;
	p->next_us = now_us + PROBE_GAP_US;
	return 1;
}

void probe_count(const struct probe *p, uint32_t *seq, uint64_t *bytes, size_t n)
{
	if (!p->sent_us)
		return;
	if (*seq != p->seq) {
		*seq = p->seq;
		*bytes = 0;
	}
	*bytes += n;
}

size_t window_share(size_t n)
{
	size_t s = WINDOW_BUDGET / (n ? n : 1);

	return s > WINDOW_MAX ? s : WINDOW_MAX;
}

uint32_t window_grow(uint32_t *window, uint64_t rtt_bytes, uint64_t backlog,
                     struct window_pool *pool, size_t share)
{
	uint64_t w = *window, g;

	/* Less than half a window per round trip: something else limits it.
	 * A consumer that falls behind: more window would only fill memory. */
	if (w >= WINDOW_MAX || rtt_bytes < w / 2 || backlog > w / 8)
		return 0;
	g = w < WINDOW_MAX - w ? w : WINDOW_MAX - w; /* double, up to the cap */
	if (pool->granted + g > share || granted + g > WINDOW_LIMIT)
		return 0;
	granted += g;
	pool->granted += g;
	*window += (uint32_t)g;
	return (uint32_t)g;
}

void window_release(uint32_t window, uint32_t initial, struct window_pool *pool)
{
	size_t g = window > initial ? window - initial : 0;

	granted = g < granted ? granted - g : 0;
	if (pool)
		pool->granted = g < pool->granted ? pool->granted - g : 0;
}

size_t window_granted(void)
{
	return granted;
}
