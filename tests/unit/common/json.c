/*
 * tests/unit/common/json.c - the JSON reader: valid documents and their
 * tokens, accessors, string decoding, and everything RFC 8259 rejects.
 */
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "tests/unit/unit.h"

static struct json_tok toks[256];

static int parse(struct json_doc *d, const char *s)
{
	return json_parse(d, s, strlen(s), toks, sizeof(toks) / sizeof(toks[0]), NULL);
}

static void test_acme_order(void)
{
	const char *s =
	    "{\n"
	    "  \"status\": \"pending\",\n"
	    "  \"expires\": \"2025-01-01T00:00:00Z\",\n"
	    "  \"identifiers\": [{\"type\": \"dns\", \"value\": \"app.example.org\"}],\n"
	    "  \"authorizations\": [\"https://ca/authz/1\", \"https://ca/authz/2\"],\n"
	    "  \"finalize\": \"https://ca/finalize/1\",\n"
	    "  \"n\": -1.5e+3, \"t\": true, \"f\": false, \"z\": null\n"
	    "}";
	struct json_doc d;
	char buf[64];
	int a, ids;

	CHECK(parse(&d, s) > 0);
	CHECK(json_type(&d, 0) == JSON_OBJECT && d.toks[0].size == 9);
	CHECK(d.toks[0].next == d.ntoks);
	CHECK(json_get_string(&d, 0, "status", buf, sizeof(buf)) == 7 &&
	      strcmp(buf, "pending") == 0);
	a = json_get(&d, 0, "authorizations");
	CHECK(json_type(&d, a) == JSON_ARRAY && d.toks[a].size == 2);
	CHECK(json_string(&d, json_at(&d, a, 1), buf, sizeof(buf)) > 0 &&
	      strcmp(buf, "https://ca/authz/2") == 0);
	CHECK(json_at(&d, a, 2) == -1);
	ids = json_get(&d, 0, "identifiers");
	CHECK(json_streq(&d, json_get(&d, json_at(&d, ids, 0), "value"), "app.example.org"));
	CHECK(json_get_string(&d, 0, "finalize", buf, sizeof(buf)) > 0);
	CHECK(json_type(&d, json_get(&d, 0, "n")) == JSON_NUMBER);
	CHECK(json_type(&d, json_get(&d, 0, "t")) == JSON_TRUE);
	CHECK(json_type(&d, json_get(&d, 0, "f")) == JSON_FALSE);
	CHECK(json_type(&d, json_get(&d, 0, "z")) == JSON_NULL);
	CHECK(json_get(&d, 0, "missing") == -1);
	CHECK(json_get(&d, a, "status") == -1);                     /* not an object */
	CHECK(json_at(&d, 0, 0) == -1);                             /* not an array */
	CHECK(json_get_string(&d, 0, "n", buf, sizeof(buf)) == -1); /* not a string */
	CHECK(json_type(&d, -1) == JSON_NONE && json_type(&d, 10000) == JSON_NONE);
	/* a value after a nested one is found (next skips the subtree) */
	CHECK(json_get(&d, 0, "z") > json_get(&d, 0, "identifiers"));
}

static void test_scalars_and_whitespace(void)
{
	struct json_doc d;

	CHECK(parse(&d, "0") == 1 && json_type(&d, 0) == JSON_NUMBER);
	CHECK(parse(&d, " \t\r\n[ ] ") == 1 && json_type(&d, 0) == JSON_ARRAY);
	CHECK(d.toks[0].start == 4 && d.toks[0].end == 7);
	CHECK(parse(&d, "{}") == 1 && d.toks[0].size == 0);
	CHECK(parse(&d, "\"\"") == 1 && json_type(&d, 0) == JSON_STRING);
	CHECK(parse(&d, "[1,[2,[3]],{\"a\":[]}]") == 9);
	CHECK(d.toks[0].size == 3);
	CHECK(json_at(&d, 0, 2) == 6 && json_type(&d, 6) == JSON_OBJECT);
	CHECK(parse(&d, "-0.0e-0") == 1);
	CHECK(parse(&d, "1E9") == 1);
}

static void test_strings(void)
{
	struct json_doc d;
	char buf[64];

	CHECK(parse(&d, "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"") == 1);
	CHECK(json_string(&d, 0, buf, sizeof(buf)) == 12);
	CHECK(memcmp(buf, "a\"b\\c/d\b\f\n\r\t", 13) == 0);
	/* \u escapes become UTF-8, surrogate pairs one 4-byte character */
	CHECK(parse(&d, "\"\\u0041\\u00e9\\u20ac\\ud83d\\ude00\"") == 1);
	CHECK(json_string(&d, 0, buf, sizeof(buf)) == 10);
	CHECK(strcmp(buf, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0);
	CHECK(json_streq(&d, 0, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
	CHECK(!json_streq(&d, 0, "A"));
	memset(buf, 'x', sizeof(buf));
	CHECK(json_string(&d, 0, buf, 10) == -1); /* no room for the NUL */
	CHECK(buf[0] == '\0');                    /* and nothing cut is left */
	/* raw UTF-8 passes */
	CHECK(parse(&d, "\"caf\xc3\xa9\"") == 1 && json_string(&d, 0, buf, sizeof(buf)) == 5);
	/* NUL cannot become a C string */
	CHECK(parse(&d, "\"a\\u0000b\"") == 1);
	CHECK(json_string(&d, 0, buf, sizeof(buf)) == -1);
	CHECK(!json_streq(&d, 0, "a"));
	/* keys are compared after decoding; the first duplicate wins */
	CHECK(parse(&d, "{\"st\\u0061tus\":\"x\",\"status\":\"y\"}") == 5);
	CHECK(json_get_string(&d, 0, "status", buf, sizeof(buf)) == 1 && buf[0] == 'x');
}

static void test_rejected(void)
{
	static const char *const bad[] = {
	    "",
	    " ",
	    "[1,]",
	    "{\"a\":1,}",
	    "{\"a\" 1}",
	    "{1:2}",
	    "[1 2]",
	    "01",
	    "1.",
	    ".5",
	    "-",
	    "+1",
	    "1e",
	    "1e+",
	    "0x10",
	    "tru",
	    "nul",
	    "True",
	    "NaN",
	    "\"abc",
	    "\"a\nb\"",
	    "\"\\x\"",
	    "\"\\u12\"",
	    "\"\\u12g4\"",
	    "\"\\ud800\"",
	    "\"\\ud800\\u0041\"",
	    "\"\\udc00\"",
	    "\"\xc0\x80\"",
	    "\"\xed\xa0\x80\"",
	    "\"\xf4\x90\x80\x80\"",
	    "\"\xe2\x82\"",
	    "\"\x80\"",
	    "[1] [2]",
	    "{} x",
	    "[",
	    "{\"a\":",
	    "/* c */ 1",
	    "'a'",
	};
	struct json_doc d;
	const char *err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (json_parse(&d, bad[i], strlen(bad[i]), toks, 256, &err) != -1 || err == NULL) {
			fprintf(stderr, "  accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
	/* embedded NUL byte (raw control character) */
	CHECK(json_parse(&d, "\"a\0b\"", 5, toks, 256, NULL) == -1);
	CHECK(json_parse(&d, "1\0", 2, toks, 256, NULL) == -1);
}

static void test_limits(void)
{
	char deep[2 * JSON_MAX_DEPTH + 8];
	struct json_doc d;
	const char *err = NULL;
	int n;

	/* exactly JSON_MAX_DEPTH nested arrays parse, one more does not */
	memset(deep, '[', JSON_MAX_DEPTH);
	memset(deep + JSON_MAX_DEPTH, ']', JSON_MAX_DEPTH);
	CHECK(json_parse(&d, deep, 2 * JSON_MAX_DEPTH, toks, 256, NULL) == JSON_MAX_DEPTH);
	memset(deep, '[', JSON_MAX_DEPTH + 1);
	memset(deep + JSON_MAX_DEPTH + 1, ']', JSON_MAX_DEPTH + 1);
	CHECK(json_parse(&d, deep, 2 * JSON_MAX_DEPTH + 2, toks, 256, &err) == -1);
	CHECK(err != NULL && strcmp(err, "nested too deeply") == 0);

	/* token capacity */
	n = json_parse(&d, "[1,2,3]", 7, toks, 4, NULL);
	CHECK(n == 4);
	CHECK(json_parse(&d, "[1,2,3]", 7, toks, 3, &err) == -1);
	CHECK(strcmp(err, "too many values") == 0);
	CHECK(json_parse(&d, "1", 1, toks, 0, NULL) == -1);
	/* a failed parse leaves an empty document */
	CHECK(d.ntoks == 0 && json_type(&d, 0) == JSON_NONE);
}

int main(void)
{
	RUN(test_acme_order);
	RUN(test_scalars_and_whitespace);
	RUN(test_strings);
	RUN(test_rejected);
	RUN(test_limits);
	UNIT_END();
}
