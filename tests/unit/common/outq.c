/* tests/unit/common/outq.c - the output queue and its spare chunks. */
#include <stdint.h>
#include <stdlib.h>

#include "../../../common/outq.h"
#include "../unit.h"

#define CAP (64u * 1024u)

static void test_order_and_bytes(void)
{
	struct outq q;
	uint8_t *p;
	size_t len;

	outq_init(&q, 16, CAP);
	CHECK(outq_head(&q, &len) == NULL);
	p = outq_reserve(&q, 3);
	memcpy(p, "abc", 3);
	outq_commit(&q, 3);
	p = outq_reserve(&q, 2); /* same chunk */
	memcpy(p, "de", 2);
	outq_commit(&q, 2);
	p = outq_reserve(&q, CAP); /* does not fit: a new chunk */
	memset(p, 'x', CAP);
	outq_commit(&q, CAP);
	CHECK(outq_bytes(&q) == 5 + CAP);
	p = outq_head(&q, &len);
	CHECK(p && len == 5 && memcmp(p, "abcde", 5) == 0);
	outq_pop(&q);
	p = outq_head(&q, &len);
	CHECK(p && len == CAP && p[0] == 'x' && p[CAP - 1] == 'x');
	outq_pop(&q);
	CHECK(outq_bytes(&q) == 0 && outq_head(&q, &len) == NULL);
	outq_free(&q);
}

/* A freed chunk of the preferred size is kept for the next reservation; an
 * oversize one is not; the spares never pass OUTQ_SPARE_BYTES. */
static void test_spare_chunks(void)
{
	enum { N = OUTQ_SPARE_BYTES / CAP + 8 };
	struct outq q;
	size_t len, one, kept;

	outq_init(&q, 16, CAP);
	CHECK(outq_spare_bytes() == 0);
	outq_reserve(&q, 10);
	outq_commit(&q, 10);
	outq_pop(&q);
	one = outq_spare_bytes();
	CHECK(one >= CAP && one < CAP + 256);
	outq_reserve(&q, 10); /* taken back */
	CHECK(outq_spare_bytes() == 0);
	outq_commit(&q, 10);
	outq_pop(&q);
	CHECK(outq_spare_bytes() == one);

	outq_reserve(&q, 4 * CAP); /* oversize: a chunk of its own, freed */
	outq_commit(&q, 4 * CAP);
	CHECK(outq_spare_bytes() == one);
	outq_pop(&q);
	CHECK(outq_spare_bytes() == one);

	for (int i = 0; i < N; i++) {
		memset(outq_reserve(&q, CAP), i, CAP);
		outq_commit(&q, CAP);
	}
	CHECK(outq_spare_bytes() == 0);
	while (outq_head(&q, &len))
		outq_pop(&q);
	kept = outq_spare_bytes();
	CHECK(kept <= OUTQ_SPARE_BYTES && kept > OUTQ_SPARE_BYTES - one);
	CHECK(kept % one == 0);
	outq_free(&q);
}

int main(void)
{
	RUN(test_spare_chunks); /* first: it starts with no spares */
	RUN(test_order_and_bytes);
	UNIT_END();
}
