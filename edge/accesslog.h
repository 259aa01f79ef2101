/*
 * edge/accesslog.h - one line per HTTP request, and per TCP stream, TLS
 * passthrough connection or UDP flow (method "TCP", "TLS" or "UDP", path "-").
 */
#ifndef RELAIS_EDGE_ACCESSLOG_H
#define RELAIS_EDGE_ACCESSLOG_H

#include <stdint.h>

/**
 * Open path for appending ("-" = stderr, NULL = off): created 0640, never
 * through a symbolic link, non-blocking.  0, or -1 with errno, and then the
 * log open before (if any) stays in use.
 */
int accesslog_open(const char *path);

/** Close the log (on exit or before reopening on reload). */
void accesslog_close(void);

/**
 * Write "TIME CLIENT HOST "METHOD PATH" STATUS in=N out=N ms=N" in one
 * write(2); strings are sanitized (quotes, backslashes, control bytes and
 * bytes over 0x7e written as \xHH; path cut at 512).  A failed write loses
 * the line and is warned about in the process log (once a minute at most).
 */
void accesslog_write(const char *client, const char *host, const char *method, const char *path,
                     int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us);

#endif
