/*
 * tests/fuzz/fuzz_json.c - libFuzzer target for common/json.c.
 *
 * Whatever parses must describe itself consistently: every token inside the
 * input, containers spanning exactly their children (counted by walking
 * `next`), keys being strings, every member findable by its decoded name,
 * decoded strings no longer than their source and equal to themselves
 * through json_streq().  Parsing with one token fewer must fail.  Any
 * disagreement aborts.
 */
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKS 4096

static struct json_tok toks[MAX_TOKS], toks2[MAX_TOKS];
static char str[70000];

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_json: invariant failed: %s\n", what);
		abort();
	}
}

/* Walk the value at token i; returns the index after it. */
static uint32_t walk(const struct json_doc *d, uint32_t i, int depth)
{
	const struct json_tok *t = &d->toks[i];
	uint32_t c = i + 1, n = 0;

	check(depth <= JSON_MAX_DEPTH, "depth");
	check(t->start <= t->end && t->end <= d->len, "token bounds");
	check(t->next > i && t->next <= d->ntoks, "next range");
	switch (t->type) {
	case JSON_OBJECT:
		check(d->buf[t->start] == '{' && d->buf[t->end - 1] == '}', "object brackets");
		while (c < t->next) {
			int len;
			uint32_t v = c + 1;

			check(d->toks[c].type == JSON_STRING, "key is a string");
			check(d->toks[c].next == c + 1, "key has no children");
			check(d->toks[c].start > t->start && d->toks[c].end < t->end, "key inside");
			len = json_string(d, (int)c, str, sizeof(str));
			if (len >= 0) {
				int f;

				check((size_t)len <= d->toks[c].end - d->toks[c].start,
				      "key length");
				check(json_streq(d, (int)c, str), "key streq");
				f = json_get(d, (int)i, str);
				/* the first member with this name: at or before this one */
				check(f > (int)i && (uint32_t)f <= v, "get finds the member");
			}
			c = walk(d, v, depth + 1);
			n++;
		}
		break;
	case JSON_ARRAY:
		check(d->buf[t->start] == '[' && d->buf[t->end - 1] == ']', "array brackets");
		while (c < t->next) {
			check(json_at(d, (int)i, n) == (int)c, "json_at");
			check(d->toks[c].start > t->start && d->toks[c].end < t->end,
			      "element inside");
			c = walk(d, c, depth + 1);
			n++;
		}
		check(json_at(d, (int)i, n) == -1, "json_at past the end");
		break;
	case JSON_STRING: {
		int len = json_string(d, (int)i, str, sizeof(str));

		check(d->buf[t->start - 1] == '"' && d->buf[t->end] == '"', "string quotes");
		if (len >= 0) {
			check((size_t)len <= t->end - t->start, "decoded length");
			check(strlen(str) == (size_t)len, "no NUL inside");
			check(json_streq(d, (int)i, str), "streq self");
		} else {
			check(memmem(d->buf + t->start, t->end - t->start, "\\u0000", 6) != NULL,
			      "only NUL fails to decode");
		}
		break;
	}
	case JSON_NUMBER:
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL:
		check(t->end > t->start, "scalar length");
		break;
	default:
		check(0, "token type");
	}
	check(c == t->next, "children end at next");
	check(n == t->size, "size");
	return c;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct json_doc d, d2;
	const char *err = NULL;
	int n;

	n = json_parse(&d, (const char *)data, size, toks, MAX_TOKS, &err);
	if (n < 0) {
		check(err != NULL, "error reason");
		check(d.ntoks == 0, "failed parse leaves no tokens");
		return 0;
	}
	check(n >= 1 && (size_t)n == d.ntoks, "token count");
	check(walk(&d, 0, 0) == (uint32_t)n, "top level covers all tokens");
	check(json_parse(&d2, (const char *)data, size, toks2, (size_t)n - 1, &err) == -1,
	      "one token fewer fails");
	check(json_parse(&d2, (const char *)data, size, toks2, (size_t)n, NULL) == n, "repeatable");
	check(memcmp(toks, toks2, (size_t)n * sizeof(toks[0])) == 0, "same tokens");
	return 0;
}
