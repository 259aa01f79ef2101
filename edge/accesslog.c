/*
 * edge/accesslog.c - one line per HTTP request.
 *
 * Each line is one write(2) on a descriptor opened O_APPEND, like nginx's
 * access_log without a buffer: lines never interleave or wait in a buffer,
 * and a failed write loses that line only.  The file holds client addresses
 * (personal data), so it is created 0640; it is opened without following a
 * symbolic link, and without blocking (a FIFO nobody reads is refused, one
 * that stalls loses lines instead of stopping the edge).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "accesslog.h"

#define ACCESSLOG_LINE_MAX 1400 /* the fields below are cut well inside this */
#define ACCESSLOG_WARN_S   60   /* at most one warning a minute about failed writes */

static int alog_fd = -1;
static int alog_cut;            /* the file ends in a cut line: end it first */
static unsigned long alog_lost; /* lines lost since the last warning */
static time_t alog_warned;      /* CLOCK_MONOTONIC seconds of that warning */

int accesslog_open(const char *path)
{
	struct stat st;
	int fd;

	if (!path) {
		accesslog_close();
		return 0;
	}
	if (strcmp(path, "-") == 0) {
		fd = STDERR_FILENO;
	} else {
		fd = open(path,
		          O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
		              O_NONBLOCK,
		          0640);
		if (fd < 0)
			return -1; /* the old file, if any, stays in use */
		/* One made by an older version, or by hand, may still be 0644. */
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IROTH))
			log_warn("access_log %s is readable by every local user (mode %04o); it "
			         "holds client addresses: chmod o-r it",
			         path, (unsigned)(st.st_mode & 07777));
	}
	accesslog_close();
	alog_fd = fd;
	alog_cut = 0;
	return 0;
}

void accesslog_close(void)
{
	if (alog_fd >= 0 && alog_fd != STDERR_FILENO)
		close(alog_fd);
	alog_fd = -1;
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

/* A line was lost (err) or cut: warn at once, then at most once a minute. */
static void accesslog_failed(int err)
{
	struct timespec now;

	alog_lost++;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (alog_warned != 0 && now.tv_sec - alog_warned < ACCESSLOG_WARN_S)
		return;
	log_warn("access_log: cannot write: %s (%lu lines lost)", strerror(err), alog_lost);
	alog_warned = now.tv_sec;
	alog_lost = 0;
}

void accesslog_write(const char *client, const char *host, const char *method, const char *path,
                     int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us)
{
	char ts[32], c[64], h[300], m[64], p[520], line[ACCESSLOG_LINE_MAX];
	struct timespec now;
	struct tm tm;
	ssize_t w;
	int n;

	if (alog_fd < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	sanitize(client, c, sizeof(c));
	sanitize(host, h, sizeof(h));
	sanitize(method, m, sizeof(m));
	sanitize(path, p, sizeof(p));
	/* A line cut by a full disk is ended before the next one starts, or
	 * the two would read as one. */
	n = snprintf(line, sizeof(line),
	             "%s%s.%03ldZ %s %s \"%s %s\" %d in=%llu out=%llu ms=%llu\n",
	             alog_cut ? "\n" : "", ts, now.tv_nsec / 1000000, c, h[0] ? h : "-", m, p,
	             status, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
	             (unsigned long long)(duration_us / 1000));
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	/* A short write is continued: the write that fails says why. */
	for (size_t off = 0; off < (size_t)n; off += (size_t)w) {
		w = write(alog_fd, line + off, (size_t)n - off);
		if (w <= 0) {
			if (off > 0)
				alog_cut = 1;
			accesslog_failed(w < 0 ? errno : EIO);
			return;
		}
	}
	alog_cut = 0;
}
