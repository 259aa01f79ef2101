/*
 * common/json.h - a minimal JSON reader (RFC 8259), for ACME responses.
 *
 * Pure: no I/O, no allocation.  json_parse() checks a complete document and
 * describes it in a caller-supplied token array: one token per value and one
 * per object key, in document order (an object's key token is followed by
 * its value's tokens).  Tokens refer to the caller's buffer by offset, which
 * must outlive the json_doc; strings are decoded on demand.
 *
 * Strict: one value with optional surrounding whitespace, no trailing commas,
 * no comments, numbers per the RFC grammar, strings valid UTF-8 without raw
 * control characters and with well-formed escapes (surrogate pairs paired).
 */
#ifndef RELAIS_COMMON_JSON_H
#define RELAIS_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 32          /* nested arrays/objects */
#define JSON_MAX_LEN   (16u << 20) /* documents larger than this are refused */

enum json_type {
	JSON_NONE = 0,
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING, /* also every object key */
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL
};

struct json_tok {
	enum json_type type;
	uint32_t start, end; /* buf[start..end): strings without quotes, containers with brackets */
	uint32_t size;       /* object: members; array: elements; others 0 */
	uint32_t next;       /* index of the first token after this value and its children */
};

struct json_doc {
	const char *buf;
	size_t len;
	const struct json_tok *toks;
	size_t ntoks; /* toks[0] is the top-level value */
};

/**
 * Parse buf[0..len) into toks[0..cap) and describe it in *doc.  Returns the
 * number of tokens (>= 1), or -1 with *err (static text) for a syntax error,
 * nesting deeper than JSON_MAX_DEPTH, more than cap tokens or len over
 * JSON_MAX_LEN.  err may be NULL.
 */
int json_parse(struct json_doc *doc, const char *buf, size_t len, struct json_tok *toks, size_t cap,
               const char **err);

/** Type of token i, JSON_NONE when i is out of range. */
enum json_type json_type(const struct json_doc *doc, int i);

/**
 * Index of the value of the first member named key (compared after decoding
 * escapes) of the object at token obj, or -1 (not an object, no such key).
 */
int json_get(const struct json_doc *doc, int obj, const char *key);

/** Index of element n (0-based) of the array at token arr, or -1. */
int json_at(const struct json_doc *doc, int arr, size_t n);

/**
 * Decode the string at token i into out[0..cap) with a terminating NUL.
 * Returns its length, or -1 when i is not a string, it holds "\u0000", or it
 * does not fit (out then holds "" when cap > 0).
 */
int json_string(const struct json_doc *doc, int i, char *out, size_t cap);

/** json_string() of member key of object obj: length, or -1 (also when absent). */
int json_get_string(const struct json_doc *doc, int obj, const char *key, char *out, size_t cap);

/** 1 when token i is a string whose decoded value equals s, else 0. */
int json_streq(const struct json_doc *doc, int i, const char *s);

#endif
