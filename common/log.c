/*
 * common/log.c - leveled, timestamped logging to stderr.
 *
 * Each line is formatted in full first and written with a single fprintf so
 * that lines from several threads do not interleave (stdio locks the stream
 * for the duration of one call).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char log_prog[64] = "relais";
static _Atomic int log_max = LOG_INFO;

static const char *const log_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_init(const char *prog, enum log_level level)
{
	if (prog != NULL) {
		const char *slash = strrchr(prog, '/');

		snprintf(log_prog, sizeof(log_prog), "%s", slash != NULL ? slash + 1 : prog);
	}
	atomic_store(&log_max, (int)level);
}

int log_level_parse(const char *s)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < (int)(sizeof(log_names) / sizeof(log_names[0])); i++)
		if (strcasecmp(s, log_names[i]) == 0)
			return i;
	return -1;
}

/* "2024-05-01T12:34:56.789Z" in UTC. */
static void log_timestamp(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	char date[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, cap, "%s.%03ldZ", date, ts.tv_nsec / 1000000L);
}

static void log_vemit(const char *level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void log_vemit(const char *level, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];
	char ts[48];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_timestamp(ts, sizeof(ts));
	fprintf(stderr, "%s %s[%ld] %s: %s\n", ts, log_prog, (long)getpid(), level, msg);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	int saved = errno; /* callers may log and then inspect errno */

	if ((int)level > atomic_load(&log_max) || (int)level < 0)
		return;
	va_start(ap, fmt);
	log_vemit(log_names[level], fmt, ap);
	va_end(ap);
	errno = saved;
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit("FATAL", fmt, ap);
	va_end(ap);
	fflush(stderr);
	abort();
}
