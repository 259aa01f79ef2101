/*
 * edge/dashboard.h - the read-only web dashboard the status endpoint serves
 * at "/": a page, its stylesheet and its script, which reads /status.
 */
#ifndef RELAIS_EDGE_DASHBOARD_H
#define RELAIS_EDGE_DASHBOARD_H

#include <stddef.h>

struct dashboard_file {
	const char *path; /* "/", "/dashboard.js", ... */
	const char *type; /* its Content-Type */
	const char *body;
};

/** The file served at path (len bytes, not NUL-terminated), or NULL. */
const struct dashboard_file *dashboard_find(const char *path, size_t len);

/** Security headers for every dashboard answer (CRLF-terminated lines). */
extern const char dashboard_headers[];

#endif
