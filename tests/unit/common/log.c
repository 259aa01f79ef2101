/*
 * tests/unit/common/log.c - lines a peer can cause, at most one a second.
 */
#include <string.h>

#include "common/log.h"
#include "tests/unit/unit.h"

static void test_rate(void)
{
	struct log_rate r = {0};
	char more[LOG_RATE_MORE];

	CHECK(log_rate_ok(&r, 5000000, more));
	CHECK(strcmp(more, "") == 0);
	/* within the second: left out, and counted */
	CHECK(!log_rate_ok(&r, 5000001, more));
	CHECK(!log_rate_ok(&r, 5999999, more));
	/* a second on: written, with the count of those left out */
	CHECK(log_rate_ok(&r, 6000000, more));
	CHECK(strcmp(more, " (and 2 more like this)") == 0);
	CHECK(!log_rate_ok(&r, 6500000, more));
	CHECK(log_rate_ok(&r, 9000000, more));
	CHECK(strcmp(more, " (and 1 more like this)") == 0);
	CHECK(log_rate_ok(&r, 10000000, more));
	CHECK(strcmp(more, "") == 0);
}

int main(void)
{
	RUN(test_rate);
	UNIT_END();
}
