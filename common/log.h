/*
 * common/log.h - leveled, timestamped logging to stderr.
 */
#ifndef RELAIS_COMMON_LOG_H
#define RELAIS_COMMON_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/** Set the program name printed on every line and the most verbose level shown. */
void log_init(const char *prog, enum log_level level);

/** Parse "error", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *s);

/**
 * Print "YYYY-mm-ddTHH:MM:SS.mmmZ prog[pid] LEVEL: message" when level is
 * enabled; in the message, control characters (C0, DEL, C1), invalid UTF-8,
 * U+2028/U+2029 and bidi overrides are written as \xHH, one per byte.
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/*
 * Lines a peer can cause at will (one per datagram, per refused flow) are
 * written at most once a second per kind: a struct log_rate each.
 */
struct log_rate {
	uint64_t next_us; /* no line before */
	unsigned skipped; /* lines left out since the last one */
};

#define LOG_RATE_MORE 48

/**
 * 1 when a line of this kind may be written at now_us (microseconds, any
 * monotonic clock); more then holds " (and N more like this)" when some were
 * left out, else "".  0: leave the line out (it is counted).
 */
int log_rate_ok(struct log_rate *r, uint64_t now_us, char more[LOG_RATE_MORE]);

/** Log a broken internal invariant and abort(). Never for bad input. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
