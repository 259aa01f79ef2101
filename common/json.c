/*
 * common/json.c - a minimal JSON reader (RFC 8259).
 *
 * A recursive-descent parser bounded by JSON_MAX_DEPTH that only records
 * where each value lies; nothing is copied until the caller asks for a
 * string.  Everything the decoder later relies on (escape syntax, paired
 * surrogates, UTF-8) is checked at parse time, so the accessors can assume
 * a well-formed document and still never read outside it.
 */
#include "json.h"
#include "hex.h"

#include <string.h>

struct jp {
	const char *buf;
	size_t len, pos;
	struct json_tok *toks;
	size_t cap, n;
	const char *err;
};

static int jp_fail(struct jp *p, const char *err)
{
	if (p->err == NULL)
		p->err = err;
	return -1;
}

static void jp_ws(struct jp *p)
{
	while (p->pos < p->len) {
		char c = p->buf[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* Append a token starting at start; its end and next are set by the caller. */
static int jp_tok(struct jp *p, enum json_type type, size_t start)
{
	struct json_tok *t;

	if (p->n >= p->cap)
		return jp_fail(p, "too many values");
	t = &p->toks[p->n];
	t->type = type;
	t->start = (uint32_t)start;
	t->end = (uint32_t)start;
	t->size = 0;
	t->next = (uint32_t)(p->n + 1);
	return (int)p->n++;
}

/* Four hex digits at s[0..4) (the caller checked they are in bounds). */
static int hex4(const char *s, unsigned *cp)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		int h = hex_digit((unsigned char)s[i]);

		if (h < 0)
			return -1;
		v = v << 4 | (unsigned)h;
	}
	*cp = v;
	return 0;
}

/* Length of the valid UTF-8 sequence at s[0..len) (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or -1. */
static int utf8_seq(const unsigned char *s, size_t len)
{
	unsigned c = s[0], cp;
	int n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return -1;
	if ((size_t)n > len)
		return -1;
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	return n;
}

/* A string at p->pos (the opening quote). */
static int jp_string(struct jp *p)
{
	size_t start = ++p->pos;
	int t;

	while (p->pos < p->len) {
		unsigned char c = (unsigned char)p->buf[p->pos];
		unsigned cp, lo;
		int n;

		if (c == '"') {
			t = jp_tok(p, JSON_STRING, start);
			if (t < 0)
				return -1;
			p->toks[t].end = (uint32_t)p->pos++;
			return t;
		}
		if (c < 0x20)
			return jp_fail(p, "control character in string");
		if (c != '\\') {
			n = utf8_seq((const unsigned char *)p->buf + p->pos, p->len - p->pos);
			if (n < 0)
				return jp_fail(p, "invalid UTF-8 in string");
			p->pos += (size_t)n;
			continue;
		}
		if (p->pos + 1 >= p->len)
			break;
		switch (p->buf[p->pos + 1]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			p->pos += 2;
			continue;
		case 'u':
			break;
		default:
			return jp_fail(p, "bad escape in string");
		}
		if (p->len - p->pos < 6 || hex4(p->buf + p->pos + 2, &cp) < 0)
			return jp_fail(p, "bad \\u escape in string");
		p->pos += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return jp_fail(p, "unpaired surrogate in string");
		if (cp >= 0xd800 && cp <= 0xdbff) {
			/* RFC 8259 §7: a high surrogate must be followed by a low one. */
			if (p->len - p->pos < 6 || p->buf[p->pos] != '\\' ||
			    p->buf[p->pos + 1] != 'u' || hex4(p->buf + p->pos + 2, &lo) < 0 ||
			    lo < 0xdc00 || lo > 0xdfff)
				return jp_fail(p, "unpaired surrogate in string");
			p->pos += 6;
		}
	}
	return jp_fail(p, "unterminated string");
}

static int jp_digits(struct jp *p)
{
	size_t start = p->pos;

	while (p->pos < p->len && p->buf[p->pos] >= '0' && p->buf[p->pos] <= '9')
		p->pos++;
	return p->pos > start ? 0 : -1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int jp_number(struct jp *p)
{
	size_t start = p->pos;
	int t;

	if (p->buf[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->buf[p->pos] == '0')
		p->pos++;
	else if (jp_digits(p) < 0)
		return jp_fail(p, "bad number");
	if (p->pos < p->len && p->buf[p->pos] == '.') {
		p->pos++;
		if (jp_digits(p) < 0)
			return jp_fail(p, "bad number");
	}
	if (p->pos < p->len && (p->buf[p->pos] == 'e' || p->buf[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (p->buf[p->pos] == '+' || p->buf[p->pos] == '-'))
			p->pos++;
		if (jp_digits(p) < 0)
			return jp_fail(p, "bad number");
	}
	t = jp_tok(p, JSON_NUMBER, start);
	if (t >= 0)
		p->toks[t].end = (uint32_t)p->pos;
	return t;
}

static int jp_literal(struct jp *p, const char *word, enum json_type type)
{
	size_t n = strlen(word);
	int t;

	if (p->len - p->pos < n || memcmp(p->buf + p->pos, word, n) != 0)
		return jp_fail(p, "unexpected character");
	t = jp_tok(p, type, p->pos);
	if (t < 0)
		return -1;
	p->pos += n;
	p->toks[t].end = (uint32_t)p->pos;
	return t;
}

static int jp_value(struct jp *p, int depth);

/* An array or object at p->pos (the opening bracket). */
static int jp_container(struct jp *p, int depth, int object)
{
	char close = object ? '}' : ']';
	int t = jp_tok(p, object ? JSON_OBJECT : JSON_ARRAY, p->pos);
	uint32_t size = 0;

	if (t < 0)
		return -1;
	if (depth >= JSON_MAX_DEPTH)
		return jp_fail(p, "nested too deeply");
	p->pos++;
	jp_ws(p);
	if (p->pos < p->len && p->buf[p->pos] == close) {
		p->pos++;
		goto done;
	}
	for (;;) {
		if (object) {
			if (p->pos >= p->len || p->buf[p->pos] != '"')
				return jp_fail(p, "expected a member name");
			if (jp_string(p) < 0)
				return -1;
			jp_ws(p);
			if (p->pos >= p->len || p->buf[p->pos] != ':')
				return jp_fail(p, "expected ':'");
			p->pos++;
		}
		if (jp_value(p, depth + 1) < 0)
			return -1;
		size++;
		jp_ws(p);
		if (p->pos >= p->len)
			return jp_fail(p, object ? "unterminated object" : "unterminated array");
		if (p->buf[p->pos] == close) {
			p->pos++;
			break;
		}
		if (p->buf[p->pos] != ',')
			return jp_fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
		p->pos++;
		jp_ws(p);
	}
done:
	p->toks[t].end = (uint32_t)p->pos;
	p->toks[t].size = size;
	p->toks[t].next = (uint32_t)p->n;
	return t;
}

static int jp_value(struct jp *p, int depth)
{
	char c;

	jp_ws(p);
	if (p->pos >= p->len)
		return jp_fail(p, "unexpected end of document");
	c = p->buf[p->pos];
	switch (c) {
	case '{':
		return jp_container(p, depth, 1);
	case '[':
		return jp_container(p, depth, 0);
	case '"':
		return jp_string(p);
	case 't':
		return jp_literal(p, "true", JSON_TRUE);
	case 'f':
		return jp_literal(p, "false", JSON_FALSE);
	case 'n':
		return jp_literal(p, "null", JSON_NULL);
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return jp_number(p);
		return jp_fail(p, "unexpected character");
	}
}

int json_parse(struct json_doc *doc, const char *buf, size_t len, struct json_tok *toks, size_t cap,
               const char **err)
{
	struct jp p = {buf, len, 0, toks, cap, 0, NULL};

	memset(doc, 0, sizeof(*doc));
	if (len > JSON_MAX_LEN) {
		jp_fail(&p, "document too large");
		goto fail;
	}
	if (jp_value(&p, 0) < 0)
		goto fail;
	jp_ws(&p);
	if (p.pos != len) {
		jp_fail(&p, "data after the document");
		goto fail;
	}
	doc->buf = buf;
	doc->len = len;
	doc->toks = toks;
	doc->ntoks = p.n;
	return (int)p.n;
fail:
	if (err != NULL)
		*err = p.err;
	return -1;
}

enum json_type json_type(const struct json_doc *doc, int i)
{
	if (i < 0 || (size_t)i >= doc->ntoks)
		return JSON_NONE;
	return doc->toks[i].type;
}

/*
 * Decode the next character of a (validated) string body at *pos, before
 * end, into out (1..4 bytes of UTF-8); returns how many bytes were written.
 */
static int json_decode_next(const char *buf, size_t *pos, size_t end, unsigned char out[4])
{
	unsigned cp, lo;
	char c = buf[*pos];

	if (c != '\\') {
		out[0] = (unsigned char)c;
		(*pos)++;
		return 1;
	}
	if (*pos + 1 >= end)
		return 0;
	c = buf[*pos + 1];
	*pos += 2;
	switch (c) {
	case 'b':
		out[0] = '\b';
		return 1;
	case 'f':
		out[0] = '\f';
		return 1;
	case 'n':
		out[0] = '\n';
		return 1;
	case 'r':
		out[0] = '\r';
		return 1;
	case 't':
		out[0] = '\t';
		return 1;
	case 'u':
		break;
	default: /* '"', '\\', '/' */
		out[0] = (unsigned char)c;
		return 1;
	}
	if (end - *pos < 4 || hex4(buf + *pos, &cp) < 0)
		return 0;
	*pos += 4;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (end - *pos < 6 || hex4(buf + *pos + 2, &lo) < 0)
			return 0;
		*pos += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

int json_string(const struct json_doc *doc, int i, char *out, size_t cap)
{
	size_t pos, end, n = 0;

	if (json_type(doc, i) != JSON_STRING || cap == 0)
		return -1;
	pos = doc->toks[i].start;
	end = doc->toks[i].end;
	while (pos < end) {
		unsigned char ch[4];
		int k = json_decode_next(doc->buf, &pos, end, ch);

		if (k <= 0 || (k == 1 && ch[0] == 0) || n + (size_t)k >= cap) {
			out[0] = '\0'; /* never a cut, unterminated string */
			return -1;
		}
		memcpy(out + n, ch, (size_t)k);
		n += (size_t)k;
	}
	out[n] = '\0';
	return n > (size_t)INT32_MAX ? -1 : (int)n;
}

int json_streq(const struct json_doc *doc, int i, const char *s)
{
	size_t pos, end, n = 0, slen = strlen(s);

	if (json_type(doc, i) != JSON_STRING)
		return 0;
	pos = doc->toks[i].start;
	end = doc->toks[i].end;
	while (pos < end) {
		unsigned char ch[4];
		int k = json_decode_next(doc->buf, &pos, end, ch);

		if (k <= 0 || n + (size_t)k > slen || memcmp(s + n, ch, (size_t)k) != 0)
			return 0;
		n += (size_t)k;
	}
	return n == slen;
}

int json_get(const struct json_doc *doc, int obj, const char *key)
{
	uint32_t k;

	if (json_type(doc, obj) != JSON_OBJECT)
		return -1;
	k = (uint32_t)obj + 1;
	for (uint32_t m = 0; m < doc->toks[obj].size && k + 1 < doc->ntoks; m++) {
		if (json_streq(doc, (int)k, key))
			return (int)k + 1;
		k = doc->toks[k + 1].next;
	}
	return -1;
}

int json_at(const struct json_doc *doc, int arr, size_t n)
{
	uint32_t e;

	if (json_type(doc, arr) != JSON_ARRAY || n >= doc->toks[arr].size)
		return -1;
	e = (uint32_t)arr + 1;
	while (n-- > 0 && e < doc->ntoks)
		e = doc->toks[e].next;
	return e < doc->ntoks ? (int)e : -1;
}

int json_get_string(const struct json_doc *doc, int obj, const char *key, char *out, size_t cap)
{
	return json_string(doc, json_get(doc, obj, key), out, cap);
}
