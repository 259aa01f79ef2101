/*
 * tests/unit/unit.h - a tiny unit test harness.
 *
 * Each test binary defines test functions and a main() that calls RUN(name)
 * for each; CHECK() records a failure and continues.  The binary prints one
 * line per test ("ok NAME" / "FAIL NAME") and ends with "UNIT N passed, N
 * failed", which tests/run.sh adds up.  Exit status is 1 on any failure.
 */
#ifndef RELAIS_TESTS_UNIT_H
#define RELAIS_TESTS_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed, unit_cur_failed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			unit_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)

#define RUN(fn)                                                                                    \
	do {                                                                                       \
		unit_cur_failed = 0;                                                               \
		fn();                                                                              \
		if (unit_cur_failed) {                                                             \
			unit_failed++;                                                             \
			printf("FAIL %s\n", #fn);                                                  \
		} else {                                                                           \
			unit_passed++;                                                             \
			printf("ok %s\n", #fn);                                                    \
		}                                                                                  \
	} while (0)

#define UNIT_END()                                                                                 \
	do {                                                                                       \
		printf("UNIT %d passed, %d failed\n", unit_passed, unit_failed);                   \
		return unit_failed ? 1 : 0;                                                        \
	} while (0)

#endif
