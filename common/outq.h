/*
 * common/outq.h - an output queue of WebSocket messages.
 *
 * Frames are appended into chunks; each chunk is later sent as one binary
 * message (so many frames share a message).  Every chunk keeps `headroom`
 * free bytes before its data for the transport's header (LWS_PRE).  The
 * queue never limits itself: callers bound it by stopping their producers
 * when outq_bytes() passes their high watermark.
 *
 * Freed chunks of a queue's preferred size are kept for reuse, up to
 * OUTQ_SPARE_BYTES per thread: a bulk transfer frees and allocates a chunk
 * every 64-256 KiB, and malloc would return that memory to the kernel only
 * to fault it in again (measured: 5% of the agent's CPU).
 */
#ifndef RELAIS_COMMON_OUTQ_H
#define RELAIS_COMMON_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#define OUTQ_SPARE_BYTES (4u * 1024u * 1024u)

struct outq_chunk {
	struct outq_chunk *next;
	size_t len;   /* bytes of message data after the headroom */
	size_t cap;   /* capacity of message data */
	size_t size;  /* bytes allocated, header included */
	uint64_t tag; /* caller's count carried with the chunk (e.g. credit) */
	uint32_t tag_id;
	uint8_t buf[]; /* headroom + data */
};

struct outq {
	struct outq_chunk *head, *tail;
	size_t bytes; /* message bytes queued */
	size_t headroom;
	size_t chunk_cap; /* preferred message size */
};

/** Prepare an empty queue. */
void outq_init(struct outq *q, size_t headroom, size_t chunk_cap);

/**
 * Return a pointer where the caller may write up to n bytes of one frame at
 * the end of the queue, or NULL when memory is exhausted.  Nothing is queued
 * until outq_commit(q, used).  n may exceed chunk_cap for one oversize frame.
 */
uint8_t *outq_reserve(struct outq *q, size_t n);

/** Account for `used` bytes written at the pointer outq_reserve returned. */
void outq_commit(struct outq *q, size_t used);

/**
 * The first message: *data points at its bytes (with q->headroom writable
 * bytes before them) and *len is its size; NULL when the queue is empty.
 */
uint8_t *outq_head(struct outq *q, size_t *len);

/**
 * Add n to the tag of the chunk the last outq_reserve() returned space in;
 * the chunk keeps the last tag_id given.
 */
void outq_tag(struct outq *q, uint32_t tag_id, uint64_t n);

/** Drop the first message (after it was handed to the transport). */
void outq_pop(struct outq *q);

/** Bytes queued. */
size_t outq_bytes(const struct outq *q);

/** Free every chunk. */
void outq_free(struct outq *q);

/** Bytes this thread keeps in spare chunks. */
size_t outq_spare_bytes(void);

#endif
