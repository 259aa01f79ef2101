/*
 * common/nofile.c - the limit on open files, raised at start (nofile.h).
 */
#include "nofile.h"

#include <limits.h>
#include <sys/resource.h>

#include "log.h"

long nofile_raise(void)
{
	struct rlimit rl;
	rlim_t want;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > NOFILE_CEILING ? NOFILE_CEILING
	                                                                    : rl.rlim_max;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			log_warn("cannot raise the limit of open files from %lu to %lu",
			         (unsigned long)was, (unsigned long)want);
			rl.rlim_cur = was;
		} else {
			log_debug("limit of open files raised from %lu to %lu", (unsigned long)was,
			          (unsigned long)want);
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)LONG_MAX)
		return LONG_MAX;
	return (long)rl.rlim_cur;
}
