/*
 * common/hostpat.h - host names and host patterns.
 *
 * A host is a DNS name in text form: labels of [a-z0-9-] (1..63 chars, not
 * starting or ending with '-'), dot separated, 1..253 chars, no trailing dot,
 * compared case-insensitively (normalised to lower case).  A pattern is a
 * host, or "*." followed by a host: "*.example.com" matches one OR MORE
 * labels in front of example.com (a.example.com, a.b.example.com), never
 * example.com itself.
 */
#ifndef RELAIS_COMMON_HOSTPAT_H
#define RELAIS_COMMON_HOSTPAT_H

#include <stddef.h>

/** Lower-case host in place. */
void host_normalize(char *host);

/** 1 when host (already lower case) is a valid host name, else 0. */
int host_valid(const char *host);

/** 1 when pat is a valid host or wildcard pattern (lower case), else 0. */
int hostpat_valid(const char *pat);

/** 1 when host matches pattern pat (both lower case), else 0. */
int hostpat_match(const char *pat, const char *host);

#endif
