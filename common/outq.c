/*
 * common/outq.c - output queue of WebSocket messages (see outq.h).
 */
#include <stdlib.h>

#include "outq.h"

/* Spare chunks of the queues' preferred sizes, newest first (see outq.h). */
static _Thread_local struct outq_chunk *spare;
static _Thread_local size_t spare_bytes;

static struct outq_chunk *chunk_alloc(size_t size)
{
	for (struct outq_chunk **pp = &spare; *pp; pp = &(*pp)->next) {
		struct outq_chunk *c = *pp;

		if (c->size == size) {
			*pp = c->next;
			spare_bytes -= size;
			return c;
		}
	}
	return malloc(size);
}

static void chunk_release(struct outq_chunk *c, size_t preferred)
{
	if (c->size == preferred && spare_bytes + c->size <= OUTQ_SPARE_BYTES) {
		c->next = spare;
		spare = c;
		spare_bytes += c->size;
		return;
	}
	free(c);
}

void outq_init(struct outq *q, size_t headroom, size_t chunk_cap)
{
	q->head = q->tail = NULL;
	q->bytes = 0;
	q->headroom = headroom;
	q->chunk_cap = chunk_cap;
}

uint8_t *outq_reserve(struct outq *q, size_t n)
{
	struct outq_chunk *c = q->tail;
	size_t cap;

	if (c && c->cap - c->len >= n)
		return c->buf + q->headroom + c->len;
	cap = n > q->chunk_cap ? n : q->chunk_cap;
	c = chunk_alloc(sizeof(*c) + q->headroom + cap);
	if (!c)
		return NULL;
	c->size = sizeof(*c) + q->headroom + cap;
	c->next = NULL;
	c->len = 0;
	c->tag = 0;
	c->tag_id = 0;
	c->cap = cap;
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	return c->buf + q->headroom;
}

void outq_tag(struct outq *q, uint32_t tag_id, uint64_t n)
{
	q->tail->tag += n;
	q->tail->tag_id = tag_id;
}

void outq_commit(struct outq *q, size_t used)
{
	q->tail->len += used;
	q->bytes += used;
}

uint8_t *outq_head(struct outq *q, size_t *len)
{
	/* An empty tail chunk can exist after a reserve that was not committed. */
	while (q->head && q->head->len == 0) {
		if (q->head == q->tail)
			return NULL;
		outq_pop(q);
	}
	if (!q->head)
		return NULL;
	*len = q->head->len;
	return q->head->buf + q->headroom;
}

void outq_pop(struct outq *q)
{
	struct outq_chunk *c = q->head;

	if (!c)
		return;
	q->head = c->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= c->len;
	chunk_release(c, sizeof(*c) + q->headroom + q->chunk_cap);
}

size_t outq_bytes(const struct outq *q)
{
	return q->bytes;
}

void outq_free(struct outq *q)
{
	while (q->head)
		outq_pop(q);
}

size_t outq_spare_bytes(void)
{
	return spare_bytes;
}
