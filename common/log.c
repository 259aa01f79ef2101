/*
 * common/log.c - leveled, timestamped logging to stderr.
 *
 * Each line is formatted in full first and written with a single fprintf so
 * that lines from several threads do not interleave (stdio locks the stream
 * for the duration of one call).  Control bytes and invalid UTF-8 in a
 * message are escaped, so that no text from outside can forge a line.
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

/*
 * Length of the UTF-8 sequence at s that may be shown as it is, or 0: it is
 * not valid UTF-8 (RFC 3629: overlong, surrogate, above U+10FFFF, cut), or
 * it is a C1 control (U+0080..U+009F: 8-bit CSI and friends), a line or
 * paragraph separator (U+2028, U+2029) or a bidirectional override
 * (U+202A..U+202E, U+2066..U+2069) that would forge or reorder a line.
 */
static size_t log_utf8_ok(const unsigned char *s)
{
	unsigned cp;
	size_t n;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07u;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f || cp == 0x2028 || cp == 0x2029 ||
	    (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return n;
}

/*
 * Copy msg into out (cap bytes, NUL-terminated) with every byte that could
 * end the line, drive a terminal or break a reader written as \xHH.
 * Messages carry text from peers (a client's request path, an agent's
 * reason, an ACME server's error, a WebSocket handshake's status line), so
 * this keeps each message on one line of harmless text whatever a caller
 * passed.  A message cut by cap is cut between characters.
 */
static void log_escape(const char *msg, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)msg;
	size_t o = 0, n;

	while (*s) {
		if (*s >= 0x20 && *s < 0x7f)
			n = 1;
		else
			n = *s >= 0x80 ? log_utf8_ok(s) : 0;
		if (n > 0) {
			if (o + n >= cap)
				break;
			memcpy(out + o, s, n);
			o += n;
			s += n;
			continue;
		}
		if (o + 4 >= cap)
			break;
		snprintf(out + o, cap - o, "\\x%02x", *s);
		o += 4;
		s++;
	}
	out[o] = '\0';
}

static void log_vemit(const char *level, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX];
	char ts[48];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_escape(msg, line, sizeof(line));
	log_timestamp(ts, sizeof(ts));
	fprintf(stderr, "%s %s[%ld] %s: %s\n", ts, log_prog, (long)getpid(), level, line);
}

int log_rate_ok(struct log_rate *r, uint64_t now_us, char more[LOG_RATE_MORE])
{
	if (now_us < r->next_us) {
		r->skipped++;
		return 0;
	}
	r->next_us = now_us + 1000000u;
	more[0] = '\0';
	if (r->skipped)
		snprintf(more, LOG_RATE_MORE, " (and %u more like this)", r->skipped);
	r->skipped = 0;
	return 1;
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
