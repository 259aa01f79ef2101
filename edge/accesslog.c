/*
 * edge/accesslog.c - one line per HTTP request.
 *
 * Lines are small and written with one fwrite each on a line-buffered
 * stream, like nginx's access_log without a buffer.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "accesslog.h"

static FILE *alog;

int accesslog_open(const char *path)
{
	accesslog_close();
	if (!path)
		return 0;
	if (strcmp(path, "-") == 0) {
		alog = stderr;
		return 0;
	}
	alog = fopen(path, "ae");
	if (!alog)
		return -1;
	setvbuf(alog, NULL, _IOLBF, 0);
	return 0;
}

void accesslog_close(void)
{
	if (alog && alog != stderr)
		fclose(alog);
	alog = NULL;
}

/* Copy s into out escaping what could forge a log line or break a parser. */
static void sanitize(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s && o + 5 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

void accesslog_write(const char *client, const char *host, const char *method, const char *path,
                     int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us)
{
	char ts[32], h[300], m[64], p[520];
	struct timespec now;
	struct tm tm;

	if (!alog)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	sanitize(host, h, sizeof(h));
	sanitize(method, m, sizeof(m));
	sanitize(path, p, sizeof(p));
	fprintf(alog, "%s.%03ldZ %s %s \"%s %s\" %d in=%llu out=%llu ms=%llu\n", ts,
	        now.tv_nsec / 1000000, client, h[0] ? h : "-", m, p, status,
	        (unsigned long long)bytes_in, (unsigned long long)bytes_out,
	        (unsigned long long)(duration_us / 1000));
}
