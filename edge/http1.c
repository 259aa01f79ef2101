/*
 * edge/http1.c - HTTP/1.1 message codec for the edge (RFC 9110, RFC 9112).
 *
 * Security first: the edge forwards bodies unchanged, so any byte sequence
 * that two HTTP parsers could frame differently is an error here rather than
 * something to repair.  Heads we forward are rewritten with CRLF line endings
 * and a single normalized Content-Length / Transfer-Encoding, so the upstream
 * frames the message exactly as we did.
 */
#include "edge/http1.h"
#include "common/hex.h"

#include <limits.h>
#include <string.h>

/* RFC 9110 §5.6.2: tchar, the characters of a token. */
static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	switch (c) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '.':
	case '^':
	case '_':
	case '`':
	case '|':
	case '~':
		return 1;
	default:
		return 0;
	}
}

/* RFC 9110 §5.5: field-vchar, SP or HTAB (VCHAR and obs-text; no other CTL). */
static int is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive compare of s[0..n) with the NUL-terminated lit. */
static int ieq(const char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (lit[i] == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
			return 0;
	return lit[n] == '\0';
}

static int ieq_n(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i;

	if (an != bn)
		return 0;
	for (i = 0; i < an; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return 0;
	return 1;
}

static int name_is(const struct http1_header *f, const char *name)
{
	return ieq(f->name, f->name_len, name);
}

/* Methods are case-sensitive (RFC 9110 §9.1). */
static int method_is(const struct http1_head *h, const char *m)
{
	size_t n = strlen(m);

	return h->method && h->method_len == n && memcmp(h->method, m, n) == 0;
}

static void set_err(int *status, const char **err, int st, const char *msg)
{
	if (status)
		*status = st;
	if (err)
		*err = msg;
}

/* ---------------------------------------------------------------- parsing */

/* "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3).  0 and *minor, -1 malformed, -2 unsupported. */
static int parse_version(const char *p, size_t n, int *minor)
{
	if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || !is_digit((unsigned char)p[5]) || p[6] != '.' ||
	    !is_digit((unsigned char)p[7]))
		return -1;
	if (p[5] != '1')
		return -2;
	/* RFC 9110 §2.5: a higher minor version of a major one implemented is
	 * processed as the highest minor implemented (1.2 as 1.1), as nginx */
	*minor = p[7] == '0' ? 0 : 1;
	return 0;
}

/* absolute-form starts with a URI scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
static int has_scheme(const char *p, size_t n)
{
	size_t i;

	if (n == 0 || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
		return 0;
	for (i = 1; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == ':')
			return 1;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '+' ||
		      c == '-' || c == '.'))
			return 0;
	}
	return 0;
}

/* RFC 9112 §3: method SP request-target SP HTTP-version, single spaces. */
static int parse_request_line(const char *p, size_t n, struct http1_head *h, int *status,
                              const char **err)
{
	size_t i = 0, t;
	int rc;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ' ') {
		set_err(status, err, 400, "malformed request method");
		return -1;
	}
	/* Methods are case-sensitive (RFC 9110 §9.1), and every registered one
	 * is upper case: "head" is not HEAD to the edge, but a service that
	 * folds case would answer it as one, without the body the edge then
	 * waits for.  nginx refuses them too. */
	for (t = 0; t < i; t++)
		if (p[t] >= 'a' && p[t] <= 'z') {
			set_err(status, err, 400, "lower-case request method");
			return -1;
		}
	h->method = p;
	h->method_len = i;
	t = ++i;
	while (i < n && p[i] != ' ') {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x21 || c == 0x7f) {
			set_err(status, err, 400, "invalid character in request target");
			return -1;
		}
		i++;
	}
	if (i == t || i == n) {
		set_err(status, err, 400, "malformed request line");
		return -1;
	}
	h->target = p + t;
	h->target_len = i - t;
	rc = parse_version(p + i + 1, n - i - 1, &h->minor);
	if (rc == -1) {
		set_err(status, err, 400, "malformed HTTP version");
		return -1;
	}
	if (rc == -2) {
		set_err(status, err, 505, "unsupported HTTP version");
		return -1;
	}

	/* RFC 9112 §3.2: the four forms of request-target, each for its methods. */
	if (method_is(h, "CONNECT")) {
		if (h->target[0] == '/' || !memchr(h->target, ':', h->target_len) ||
		    memchr(h->target, '/', h->target_len) ||
		    memchr(h->target, '@', h->target_len)) {
			set_err(status, err, 400, "CONNECT needs an authority-form target");
			return -1;
		}
	} else if (h->target_len == 1 && h->target[0] == '*') {
		if (!method_is(h, "OPTIONS")) {
			set_err(status, err, 400, "asterisk-form target outside OPTIONS");
			return -1;
		}
	} else if (h->target[0] != '/' && !has_scheme(h->target, h->target_len)) {
		set_err(status, err, 400, "malformed request target");
		return -1;
	}
	return 0;
}

/* RFC 9112 §4: HTTP-version SP 3DIGIT SP [ reason-phrase ]; the last SP is optional here. */
static int parse_status_line(const char *p, size_t n, struct http1_head *h, const char **err)
{
	size_t i;
	int rc;

	if (n < 12 || p[8] != ' ') {
		*err = "malformed status line";
		return -1;
	}
	rc = parse_version(p, 8, &h->minor);
	if (rc != 0) {
		*err = rc == -2 ? "unsupported HTTP version in response" : "malformed status line";
		return -1;
	}
	if (!is_digit((unsigned char)p[9]) || !is_digit((unsigned char)p[10]) ||
	    !is_digit((unsigned char)p[11])) {
		*err = "malformed status code";
		return -1;
	}
	h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (h->status < 100 || h->status > 599) {
		*err = "status code out of range";
		return -1;
	}
	h->reason = p + n;
	h->reason_len = 0;
	if (n == 12)
		return 0;
	if (p[12] != ' ') {
		*err = "malformed status line";
		return -1;
	}
	for (i = 13; i < n; i++) {
		if (!is_field_char((unsigned char)p[i])) {
			*err = "invalid character in reason phrase";
			return -1;
		}
	}
	h->reason = p + 13;
	h->reason_len = n - 13;
	return 0;
}

/* RFC 9112 §5: field-name ":" OWS field-value OWS; no obs-fold (§5.2), no space before ':'. */
static int parse_field_line(const char *p, size_t n, struct http1_header *f, const char **err)
{
	size_t i = 0, e;

	if (is_ows((unsigned char)p[0])) {
		*err = "obs-fold or whitespace before a field name";
		return -1;
	}
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == n) {
		*err = "header field without a colon";
		return -1;
	}
	if (p[i] != ':') {
		*err = is_ows((unsigned char)p[i]) ? "whitespace between field name and colon"
		                                   : "invalid character in field name";
		return -1;
	}
	if (i == 0) {
		*err = "empty field name";
		return -1;
	}
	f->name = p;
	f->name_len = i;
	for (e = i + 1; e < n; e++) {
		if (!is_field_char((unsigned char)p[e])) {
			*err = "invalid character in field value";
			return -1;
		}
	}
	i++;
	while (i < n && is_ows((unsigned char)p[i]))
		i++;
	e = n;
	while (e > i && is_ows((unsigned char)p[e - 1]))
		e--;
	f->value = p + i;
	f->value_len = e - i;
	return 0;
}

static ssize_t parse_head(const char *buf, size_t len, size_t max_head, struct http1_head *h,
                          int request, int *status, const char **err)
{
	const int bad = request ? 400 : 502, big = request ? 431 : 502;
	const char *e = NULL;
	size_t n, pos = 0, empty = 0;
	int first = 1;

	h->method = h->target = h->reason = NULL;
	h->method_len = h->target_len = h->reason_len = 0;
	h->minor = h->status = 0;
	h->nheaders = h->head_len = 0;
	if (max_head > SSIZE_MAX)
		max_head = SSIZE_MAX;
	n = len < max_head ? len : max_head;

	for (;;) {
		const char *lf = pos < n ? memchr(buf + pos, '\n', n - pos) : NULL;
		size_t end, ll;

		if (!lf)
			break;
		/* RFC 9112 §2.2: LF ends a line, a CR right before it is dropped. */
		end = (size_t)(lf - buf);
		ll = end - pos;
		if (ll > 0 && buf[end - 1] == '\r')
			ll--;
		if (first && ll == 0) {
			/* §2.2: ignore empty lines before the start line, a few. */
			if (++empty > HTTP1_MAX_EMPTY_LINES) {
				set_err(status, err, bad,
				        "too many empty lines before the start line");
				return HTTP1_ERROR;
			}
		} else if (first) {
			first = 0;
			if (request) {
				if (parse_request_line(buf + pos, ll, h, status, err) < 0)
					return HTTP1_ERROR;
			} else if (parse_status_line(buf + pos, ll, h, &e) < 0) {
				set_err(status, err, bad, e);
				return HTTP1_ERROR;
			}
		} else if (ll == 0) {
			h->head_len = end + 1;
			if (request) {
				enum http1_body kind;
				uint64_t length;
				if (http1_request_body(h, &kind, &length, status, err) < 0)
					return HTTP1_ERROR;
			}
			return (ssize_t)h->head_len;
		} else {
			if (h->nheaders == HTTP1_MAX_HEADERS) {
				set_err(status, err, big, "too many header fields");
				return HTTP1_ERROR;
			}
			if (parse_field_line(buf + pos, ll, &h->headers[h->nheaders], &e) < 0) {
				set_err(status, err, bad, e);
				return HTTP1_ERROR;
			}
			h->nheaders++;
		}
		pos = end + 1;
	}
	/* No complete head in the first max_head bytes: it can only get longer. */
	if (len >= max_head && request && first) {
		set_err(status, err, 414, "request line too long"); /* RFC 9110 §15.5.15 */
		return HTTP1_ERROR;
	}
	if (len >= max_head) {
		set_err(status, err, big,
		        request ? "request head too large" : "response head too large");
		return HTTP1_ERROR;
	}
	return HTTP1_INCOMPLETE;
}

ssize_t http1_parse_request(const char *buf, size_t len, size_t max_head, struct http1_head *h,
                            int *status, const char **err)
{
	return parse_head(buf, len, max_head, h, 1, status, err);
}

ssize_t http1_parse_response(const char *buf, size_t len, size_t max_head, struct http1_head *h,
                             int *status, const char **err)
{
	return parse_head(buf, len, max_head, h, 0, status, err);
}

/* ------------------------------------------------------- field-value lists */

/* Walks the elements of the comma-separated list formed by every field named name. */
struct list_iter {
	const struct http1_head *h;
	const char *name;
	size_t idx;
	const char *p, *end;
	int in;
};

static void list_begin(struct list_iter *it, const struct http1_head *h, const char *name)
{
	it->h = h;
	it->name = name;
	it->idx = 0;
	it->p = it->end = NULL;
	it->in = 0;
}

/* Next element, trimmed of OWS (may be empty); 0 at the end. */
static int list_next(struct list_iter *it, const char **elem, size_t *elen)
{
	const char *s, *c, *e;

	if (!it->in) {
		while (it->idx < it->h->nheaders && !name_is(&it->h->headers[it->idx], it->name))
			it->idx++;
		if (it->idx == it->h->nheaders)
			return 0;
		it->p = it->h->headers[it->idx].value;
		it->end = it->p + it->h->headers[it->idx].value_len;
		it->idx++;
		it->in = 1;
	}
	s = it->p;
	c = s < it->end ? memchr(s, ',', (size_t)(it->end - s)) : NULL;
	e = c ? c : it->end;
	it->p = c ? c + 1 : it->end;
	if (!c)
		it->in = 0;
	while (s < e && is_ows((unsigned char)*s))
		s++;
	while (e > s && is_ows((unsigned char)e[-1]))
		e--;
	*elem = s;
	*elen = (size_t)(e - s);
	return 1;
}

static int has_token_n(const struct http1_head *h, const char *name, const char *tok, size_t tlen)
{
	struct list_iter it;
	const char *el;
	size_t elen;

	list_begin(&it, h, name);
	while (list_next(&it, &el, &elen))
		if (ieq_n(el, elen, tok, tlen))
			return 1;
	return 0;
}

const struct http1_header *http1_find(const struct http1_head *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->nheaders; i++)
		if (name_is(&h->headers[i], name))
			return &h->headers[i];
	return NULL;
}

int http1_has_token(const struct http1_head *h, const char *name, const char *token)
{
	return has_token_n(h, name, token, strlen(token));
}

int http1_keep_alive(const struct http1_head *h)
{
	if (http1_has_token(h, "Connection", "close"))
		return 0;
	if (h->minor >= 1)
		return 1;
	return http1_has_token(h, "Connection", "keep-alive");
}

/*
 * 1 when an Upgrade element names h2c (RFC 9113 §3.1, RFC 7540 §3.2), with
 * or without a "/version" (RFC 9110 §7.8).  After a 101 the edge relays raw
 * bytes, so an HTTP/2 connection to the service would carry requests whose
 * heads the edge never sees nor rewrites (X-Forwarded-For, X-Real-IP).
 */
static int upgrade_to_h2c(const struct http1_head *h)
{
	struct list_iter it;
	const char *el, *slash;
	size_t elen;

	list_begin(&it, h, "Upgrade");
	while (list_next(&it, &el, &elen)) {
		slash = elen ? memchr(el, '/', elen) : NULL;
		if (ieq(el, slash ? (size_t)(slash - el) : elen, "h2c"))
			return 1;
	}
	return 0;
}

int http1_is_upgrade(const struct http1_head *h)
{
	/* RFC 9110 §7.8: Upgrade is ignored in HTTP/1.0 and needs "Connection: upgrade". */
	return h->minor == 1 && http1_find(h, "Upgrade") != NULL &&
	       http1_has_token(h, "Connection", "upgrade") && !upgrade_to_h2c(h);
}

/* ----------------------------------------------------------------- framing */

/*
 * RFC 9110 §8.6: Content-Length is 1*DIGIT; a list of identical values may be
 * taken as one.  At most 2^63-1, as nginx: a service that reads lengths as
 * signed 64-bit numbers must not frame the body differently from the edge.
 * Returns 0 (*present, *value) or -1 for anything else.
 */
static int content_length(const struct http1_head *h, int *present, uint64_t *value)
{
	struct list_iter it;
	const char *el;
	size_t elen, i;

	*present = 0;
	*value = 0;
	list_begin(&it, h, "Content-Length");
	while (list_next(&it, &el, &elen)) {
		uint64_t v = 0;

		if (elen == 0)
			return -1;
		for (i = 0; i < elen; i++) {
			unsigned d = (unsigned char)el[i] - '0';
			if (d > 9 || v > ((uint64_t)INT64_MAX - d) / 10)
				return -1;
			v = v * 10 + d;
		}
		if (*present && v != *value)
			return -1;
		*present = 1;
		*value = v;
	}
	return 0;
}

struct te_info {
	int present;   /* some Transfer-Encoding field */
	int malformed; /* empty list, a non-token element, chunked twice */
	int chunked_last;
	int chunked_not_last;
	int unknown; /* a coding other than chunked */
};

/* RFC 9112 §6.1: Transfer-Encoding is a list of transfer codings; empty elements are skipped. */
static void transfer_encoding(const struct http1_head *h, struct te_info *te)
{
	struct list_iter it;
	const char *el;
	size_t elen, i, count = 0;
	int seen_chunked = 0;

	memset(te, 0, sizeof(*te));
	te->present = http1_find(h, "Transfer-Encoding") != NULL;
	if (!te->present)
		return;
	list_begin(&it, h, "Transfer-Encoding");
	while (list_next(&it, &el, &elen)) {
		if (elen == 0)
			continue;
		count++;
		for (i = 0; i < elen; i++)
			if (!is_tchar((unsigned char)el[i]))
				te->malformed = 1;
		if (ieq(el, elen, "chunked")) {
			if (seen_chunked)
				te->malformed = 1;
			seen_chunked = 1;
			te->chunked_last = 1;
		} else {
			te->unknown = 1;
			if (seen_chunked)
				te->chunked_not_last = 1;
			te->chunked_last = 0;
		}
	}
	if (count == 0)
		te->malformed = 1;
}

int http1_request_body(const struct http1_head *h, enum http1_body *kind, uint64_t *length,
                       int *status, const char **err)
{
	struct te_info te;
	uint64_t cl;
	int clp;

	*kind = HTTP1_BODY_NONE;
	*length = 0;
	transfer_encoding(h, &te);
	if (content_length(h, &clp, &cl) < 0) {
		set_err(status, err, 400, "invalid Content-Length");
		return -1;
	}
	if (te.present) {
		/* §6.1: TE in HTTP/1.0 means faulty framing; TE with CL smells of smuggling. */
		if (h->minor == 0) {
			set_err(status, err, 400, "Transfer-Encoding in an HTTP/1.0 request");
			return -1;
		}
		if (clp) {
			set_err(status, err, 400, "both Transfer-Encoding and Content-Length");
			return -1;
		}
		if (te.malformed) {
			set_err(status, err, 400, "malformed Transfer-Encoding");
			return -1;
		}
		/* §6.3: chunked must be the final coding, else 400. */
		if (te.chunked_not_last) {
			set_err(status, err, 400, "chunked is not the final transfer coding");
			return -1;
		}
		/* §6.1: a coding we do not implement (we pass the body through) gets 501. */
		if (te.unknown) {
			set_err(status, err, 501, "unsupported Transfer-Encoding");
			return -1;
		}
		*kind = HTTP1_BODY_CHUNKED;
		return 0;
	}
	if (clp) {
		*kind = HTTP1_BODY_LENGTH;
		*length = cl;
	}
	return 0;
}

int http1_response_body(const struct http1_head *h, int request_was_head, int request_was_connect,
                        enum http1_body *kind, uint64_t *length, const char **err)
{
	struct te_info te;
	uint64_t cl;
	int clp;

	*kind = HTTP1_BODY_NONE;
	*length = 0;
	/* RFC 9112 §6.3 items 1 and 2, in order. */
	if (h->status == 101 || (request_was_connect && h->status >= 200 && h->status < 300)) {
		*kind = HTTP1_BODY_TUNNEL;
		return 0;
	}
	if (request_was_head || h->status < 200 || h->status == 204 || h->status == 304)
		return 0;
	transfer_encoding(h, &te);
	if (te.present) {
		if (h->minor == 0) {
			*err = "Transfer-Encoding in an HTTP/1.0 response";
			return -1;
		}
		/* §6.3 item 3: allowed but "ought to be handled as an error"; we do. */
		if (http1_find(h, "Content-Length")) {
			*err = "both Transfer-Encoding and Content-Length in response";
			return -1;
		}
		if (te.malformed) {
			*err = "malformed Transfer-Encoding in response";
			return -1;
		}
		*kind = te.chunked_last ? HTTP1_BODY_CHUNKED : HTTP1_BODY_CLOSE;
		return 0;
	}
	/* §6.3 item 5: an invalid Content-Length in a response means 502. */
	if (content_length(h, &clp, &cl) < 0) {
		*err = "invalid Content-Length in response";
		return -1;
	}
	if (clp) {
		*kind = HTTP1_BODY_LENGTH;
		*length = cl;
		return 0;
	}
	*kind = HTTP1_BODY_CLOSE;
	return 0;
}

/* --------------------------------------------------------- chunked tracker */

enum {
	CH_SIZE_FIRST,
	CH_SIZE,
	CH_EXT_BWS,        /* whitespace that must be followed by ';' */
	CH_EXT_NAME_START, /* after ';' */
	CH_EXT_NAME,
	CH_EXT_NAME_BWS,
	CH_EXT_VAL_START, /* after '=' */
	CH_EXT_VAL_TOKEN,
	CH_EXT_QUOTED,
	CH_EXT_QPAIR,
	CH_EXT_AFTER_QUOTE,
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START,
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
	CH_ERROR
};

void http1_chunked_init(struct http1_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE_FIRST;
}

static ssize_t chunked_fail(struct http1_chunked *c, const char **err, const char *msg)
{
	c->state = CH_ERROR;
	if (err)
		*err = msg;
	return -1;
}

/*
 * RFC 9112 §7.1:
 *   chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   last-chunk = 1*("0") [ chunk-ext ] CRLF, trailer-section CRLF
 * Strict: CRLF only, no whitespace before CRLF, extensions must parse.
 */
ssize_t http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len, int *done,
                           const char **err)
{
	size_t i = 0;

	*done = 0;
	c->trailer_len = 0;
	if (c->state == CH_DONE) {
		*done = 1;
		return 0;
	}
	if (c->state == CH_ERROR)
		return chunked_fail(c, err, "chunked body already failed");
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;

	while (i < len) {
		unsigned char ch;
		int v;

		if (c->state == CH_DATA) {
			size_t n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (c->on_data && n)
				c->on_data(c->on_data_arg, buf + i, n);
			i += n;
			c->remaining -= n;
			c->total += n;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			continue;
		}
		ch = (unsigned char)buf[i++];
		if (c->state <= CH_SIZE_LF) {
			if (++c->linelen > HTTP1_CHUNK_LINE_MAX)
				return chunked_fail(c, err, "chunk-size line too long");
		} else if (c->state >= CH_TRAILER_START) {
			if (++c->linelen > HTTP1_CHUNK_TRAILER_MAX)
				return chunked_fail(c, err, "chunked trailer section too large");
			/* Field lines precede the final CRLF: one run per feed. */
			if (c->state < CH_FINAL_LF &&
			    (c->state != CH_TRAILER_START || ch != '\r')) {
				if (!c->trailer_len)
					c->trailer_off = i - 1;
				c->trailer_len++;
			}
		}

		switch (c->state) {
		case CH_SIZE_FIRST:
			if ((v = hex_digit(ch)) < 0)
				return chunked_fail(c, err, "invalid chunk size");
			c->remaining = (uint64_t)v;
			c->state = CH_SIZE;
			break;
		case CH_SIZE:
			if ((v = hex_digit(ch)) >= 0) {
				/* at most 2^63-1, as Content-Length */
				if (c->remaining > ((uint64_t)INT64_MAX >> 4))
					return chunked_fail(c, err, "chunk size overflow");
				c->remaining = (c->remaining << 4) | (uint64_t)v;
			} else if (ch == ';') {
				c->state = CH_EXT_NAME_START;
			} else if (is_ows(ch)) {
				c->state = CH_EXT_BWS;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				return chunked_fail(c, err, "invalid chunk size");
			}
			break;
		case CH_EXT_BWS:
			if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (!is_ows(ch))
				return chunked_fail(c, err, "invalid chunk extension");
			break;
		case CH_EXT_NAME_START:
			if (is_tchar(ch))
				c->state = CH_EXT_NAME;
			else if (!is_ows(ch))
				return chunked_fail(c, err, "invalid chunk extension");
			break;
		case CH_EXT_NAME:
			if (is_tchar(ch))
				break;
			if (is_ows(ch))
				c->state = CH_EXT_NAME_BWS;
			else if (ch == '=')
				c->state = CH_EXT_VAL_START;
			else if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				return chunked_fail(c, err, "invalid chunk extension");
			break;
		case CH_EXT_NAME_BWS:
			if (ch == '=')
				c->state = CH_EXT_VAL_START;
			else if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (!is_ows(ch))
				return chunked_fail(c, err, "invalid chunk extension");
			break;
		case CH_EXT_VAL_START:
			if (is_tchar(ch))
				c->state = CH_EXT_VAL_TOKEN;
			else if (ch == '"')
				c->state = CH_EXT_QUOTED;
			else if (!is_ows(ch))
				return chunked_fail(c, err, "invalid chunk extension value");
			break;
		case CH_EXT_VAL_TOKEN:
			if (is_tchar(ch))
				break;
			if (is_ows(ch))
				c->state = CH_EXT_BWS;
			else if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				return chunked_fail(c, err, "invalid chunk extension value");
			break;
		case CH_EXT_QUOTED:
			/* RFC 9110 §5.6.4: qdtext excludes CTLs other than HTAB, '"' and '\'. */
			if (ch == '"')
				c->state = CH_EXT_AFTER_QUOTE;
			else if (ch == '\\')
				c->state = CH_EXT_QPAIR;
			else if (!is_field_char(ch))
				return chunked_fail(c, err, "invalid quoted chunk extension");
			break;
		case CH_EXT_QPAIR:
			if (!is_field_char(ch))
				return chunked_fail(c, err, "invalid quoted chunk extension");
			c->state = CH_EXT_QUOTED;
			break;
		case CH_EXT_AFTER_QUOTE:
			if (is_ows(ch))
				c->state = CH_EXT_BWS;
			else if (ch == ';')
				c->state = CH_EXT_NAME_START;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				return chunked_fail(c, err, "invalid chunk extension");
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return chunked_fail(c, err, "chunk-size line not ended by CRLF");
			c->linelen = 0;
			if (c->remaining == 0) {
				c->state = CH_TRAILER_START;
			} else {
				if (c->remaining > (uint64_t)INT64_MAX - c->total)
					return chunked_fail(c, err, "chunked body too large");
				c->state = CH_DATA;
			}
			break;
		case CH_DATA_CR:
			if (ch != '\r')
				return chunked_fail(c, err, "chunk data not followed by CRLF");
			c->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return chunked_fail(c, err, "chunk data not followed by CRLF");
			c->state = CH_SIZE_FIRST;
			c->linelen = 0;
			break;
		case CH_TRAILER_START:
			/* §7.1.2: trailer fields are field lines; obs-fold fails as a non-token. */
			if (ch == '\r')
				c->state = CH_FINAL_LF;
			else if (is_tchar(ch))
				c->state = CH_TRAILER_NAME;
			else
				return chunked_fail(c, err, "invalid trailer field");
			break;
		case CH_TRAILER_NAME:
			if (ch == ':')
				c->state = CH_TRAILER_VALUE;
			else if (!is_tchar(ch))
				return chunked_fail(c, err, "invalid trailer field name");
			break;
		case CH_TRAILER_VALUE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (!is_field_char(ch))
				return chunked_fail(c, err, "invalid trailer field value");
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return chunked_fail(c, err, "trailer field not ended by CRLF");
			c->state = CH_TRAILER_START;
			break;
		case CH_FINAL_LF:
			if (ch != '\n')
				return chunked_fail(c, err, "chunked body not ended by CRLF");
			c->state = CH_DONE;
			*done = 1;
			return (ssize_t)i;
		default:
			return chunked_fail(c, err, "chunked tracker in a bad state");
		}
	}
	return (ssize_t)i;
}

/* ----------------------------------------------------------------- writing */

/* A bounded output buffer: once something does not fit, everything after fails. */
struct wbuf {
	char *p;
	size_t len, cap;
	int full;
};

static void put(struct wbuf *w, const char *s, size_t n)
{
	if (w->full || n > w->cap - w->len) {
		w->full = 1;
		return;
	}
	if (n > 0)
		memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void put_str(struct wbuf *w, const char *s)
{
	put(w, s, strlen(s));
}

static void put_u64(struct wbuf *w, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(w, tmp + i, sizeof(tmp) - i);
}

static void put_field(struct wbuf *w, const char *name, size_t nlen, const char *value, size_t vlen)
{
	put(w, name, nlen);
	put(w, ": ", 2);
	put(w, value, vlen);
	put(w, "\r\n", 2);
}

static ssize_t wbuf_result(const struct wbuf *w)
{
	return w->full || w->len > SSIZE_MAX ? -1 : (ssize_t)w->len;
}

/* Text from the caller that goes into a field value: no CTLs, not empty. */
static int safe_value(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++)
		if (!is_field_char((unsigned char)*s) || *s == '\t')
			return 0;
	return 1;
}

/*
 * RFC 9110 §7.6.1: hop-by-hop fields never forwarded (Upgrade handled by
 * callers).  HTTP2-Settings belongs to an h2c upgrade of one connection
 * (RFC 7540 §3.2.1), which the edge never forwards, even when a client
 * forgot to list it in Connection.
 */
static int is_hop_by_hop(const struct http1_header *f)
{
	return name_is(f, "Connection") || name_is(f, "Keep-Alive") ||
	       name_is(f, "Proxy-Connection") || name_is(f, "TE") || name_is(f, "Trailer") ||
	       name_is(f, "HTTP2-Settings");
}

/*
 * A client-sent field that could pass for one the edge vouches for: the
 * client's address, scheme or host as a proxy saw them.  Forwarded (RFC
 * 7239), X-Forwarded (its draft) and every X-Forwarded-*, the usual client-IP fields, and any name
 * with '_': CGI and WSGI servers map '-' and '_' to the same variable
 * (X_Real_IP becomes HTTP_X_REAL_IP), as nginx's underscores_in_headers
 * off assumes.  Client-IP is the first one the common PHP "client address"
 * snippet reads ($_SERVER['HTTP_CLIENT_IP'], ahead of X-Forwarded-For).
 */
static int is_spoofable(const struct http1_header *f)
{
	static const char xf[] = "X-Forwarded-";

	return memchr(f->name, '_', f->name_len) != NULL || name_is(f, "Forwarded") ||
	       name_is(f, "X-Forwarded") ||
	       (f->name_len > sizeof(xf) - 1 && ieq(f->name, sizeof(xf) - 1, xf)) ||
	       name_is(f, "X-Real-IP") || name_is(f, "True-Client-IP") ||
	       name_is(f, "X-Client-IP") || name_is(f, "CF-Connecting-IP") ||
	       name_is(f, "X-Cluster-Client-IP") || name_is(f, "Client-IP") ||
	       name_is(f, "X-Originating-IP") || name_is(f, "X-Remote-IP") ||
	       name_is(f, "X-Remote-Addr");
}

/* Named in Connection, so meant for this hop only (§7.6.1). */
static int listed_in_connection(const struct http1_head *h, const struct http1_header *f)
{
	return has_token_n(h, "Connection", f->name, f->name_len);
}

/* The authority of an absolute-form target ("http://a.example:8080/x" -> "a.example:8080"). */
static int target_authority(const struct http1_head *h, const char **auth, size_t *alen)
{
	const char *p = h->target, *end = h->target + h->target_len, *s;

	if (h->target_len == 0 || p[0] == '/' || (h->target_len == 1 && p[0] == '*'))
		return -1;
	if (method_is(h, "CONNECT")) {
		*auth = p;
		*alen = h->target_len;
		return 0;
	}
	s = memchr(p, ':', h->target_len);
	if (!s || end - s < 3 || s[1] != '/' || s[2] != '/')
		return -1;
	s += 3;
	p = s;
	while (p < end && *p != '/' && *p != '?' && *p != '#')
		p++;
	*auth = s;
	*alen = (size_t)(p - s);
	return 0;
}

ssize_t http1_write_request(const struct http1_head *h, const struct http1_forward *fw, char *out,
                            size_t cap)
{
	struct wbuf w = {out, 0, cap, 0};
	const struct http1_header *host_field = NULL;
	const char *host = NULL;
	size_t host_len = 0, i;
	enum http1_body kind;
	uint64_t length;
	int upgrade, generated_host = 0, wrote_framing = 0, xff_listed;
	struct list_iter it;
	const char *el;
	size_t elen;

	if (!h->method || !fw || !safe_value(fw->client_ip) || (fw->host && !safe_value(fw->host)))
		return -1;
	if (http1_request_body(h, &kind, &length, NULL, NULL) < 0)
		return -1;
	upgrade = http1_is_upgrade(h);

	/* RFC 9112 §3.2.2: a proxy forwards an absolute-form target's authority as Host. */
	if (target_authority(h, &host, &host_len) == 0) {
		generated_host = 1;
	} else if ((host_field = http1_find(h, "Host")) != NULL) {
		host = host_field->value;
		host_len = host_field->value_len;
	} else if (fw->host) {
		host = fw->host;
		host_len = strlen(fw->host);
		generated_host = 1;
	}

	put(&w, h->method, h->method_len);
	put(&w, " ", 1);
	put(&w, h->target, h->target_len);
	put_str(&w, h->minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
	if (generated_host)
		put_field(&w, "Host", 4, host, host_len);

	for (i = 0; i < h->nheaders; i++) {
		const struct http1_header *f = &h->headers[i];

		/* Framing and routing fields first: listing them in Connection can't drop them. */
		if (name_is(f, "Host")) {
			if (f == host_field)
				put_field(&w, f->name, f->name_len, f->value, f->value_len);
			continue;
		}
		if (name_is(f, "Content-Length") || name_is(f, "Transfer-Encoding")) {
			if (!wrote_framing) {
				wrote_framing = 1;
				if (kind == HTTP1_BODY_CHUNKED) {
					put_str(&w, "Transfer-Encoding: chunked\r\n");
				} else {
					put_str(&w, "Content-Length: ");
					put_u64(&w, length);
					put(&w, "\r\n", 2);
				}
			}
			continue;
		}
		if (name_is(f, "Upgrade")) {
			if (upgrade)
				put_field(&w, f->name, f->name_len, f->value, f->value_len);
			continue;
		}
		if (is_hop_by_hop(f) || name_is(f, "Proxy-Authorization") || is_spoofable(f) ||
		    listed_in_connection(h, f) ||
		    (fw->drop_authorization && name_is(f, "Authorization") && f->value_len > 5 &&
		     ieq(f->value, 5, "basic") && (f->value[5] == ' ' || f->value[5] == '\t')))
			continue;
		put_field(&w, f->name, f->name_len, f->value, f->value_len);
	}

	/* One X-Forwarded-For: the client's list (unless hop-by-hop) then the peer address. */
	put_str(&w, "X-Forwarded-For: ");
	xff_listed = http1_has_token(h, "Connection", "X-Forwarded-For");
	list_begin(&it, h, "X-Forwarded-For");
	while (!xff_listed && list_next(&it, &el, &elen)) {
		if (elen == 0)
			continue;
		put(&w, el, elen);
		put(&w, ", ", 2);
	}
	put_str(&w, fw->client_ip);
	put_str(&w,
	        fw->tls ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
	if (host && host_len > 0)
		put_field(&w, "X-Forwarded-Host", 16, host, host_len);
	put_str(&w, "X-Real-IP: ");
	put_str(&w, fw->client_ip);
	put(&w, "\r\n", 2);
	if (upgrade)
		put_str(&w, "Connection: upgrade\r\n");
	else if (fw->close)
		put_str(&w, "Connection: close\r\n");
	else if (h->minor == 0 && http1_keep_alive(h))
		/* HTTP/1.0 closes unless asked not to: keep the client's wish
		 * (its Connection header, hop-by-hop, was not forwarded). */
		put_str(&w, "Connection: keep-alive\r\n");
	put(&w, "\r\n", 2);
	return wbuf_result(&w);
}

ssize_t http1_write_response(const struct http1_head *h, int close, int client_minor, char *out,
                             size_t cap)
{
	struct wbuf w = {out, 0, cap, 0};
	uint64_t cl;
	int clp, cl_ok, wrote_cl = 0, is101 = h->status == 101;
	/* RFC 9110 §8.6, RFC 9112 §6.1: no Content-Length or Transfer-Encoding
	 * in a 1xx or 204.  The edge reads none of them as a body; a client that
	 * honoured one would take the next response's bytes for it. */
	int no_framing = h->status < 200 || h->status == 204;
	size_t i;

	if (h->status < 100 || h->status > 599)
		return -1;
	cl_ok = content_length(h, &clp, &cl) == 0;
	put_str(&w, h->minor ? "HTTP/1.1 " : "HTTP/1.0 ");
	put_u64(&w, (uint64_t)h->status);
	put(&w, " ", 1);
	put(&w, h->reason, h->reason_len);
	put(&w, "\r\n", 2);

	for (i = 0; i < h->nheaders; i++) {
		const struct http1_header *f = &h->headers[i];

		if (name_is(f, "Content-Length")) {
			/* Duplicates that agree become one field.  A bad one only
			 * reaches here on a response without a body (HEAD, 304;
			 * http1_response_body() refused the others): dropped. */
			if (cl_ok && !no_framing && !wrote_cl) {
				wrote_cl = 1;
				put_str(&w, "Content-Length: ");
				put_u64(&w, cl);
				put(&w, "\r\n", 2);
			}
			continue;
		}
		if (name_is(f, "Transfer-Encoding")) {
			/* RFC 9112 §6.1: never to an HTTP/1.0 client, which would
			 * not decode it: the edge removes the chunking and closes. */
			if (!no_framing && client_minor > 0)
				put_field(&w, f->name, f->name_len, f->value, f->value_len);
			continue;
		}
		if (name_is(f, "Upgrade")) {
			if (is101)
				put_field(&w, f->name, f->name_len, f->value, f->value_len);
			continue;
		}
		if (is_hop_by_hop(f) || listed_in_connection(h, f))
			continue;
		put_field(&w, f->name, f->name_len, f->value, f->value_len);
	}
	if (is101)
		put_str(&w, "Connection: upgrade\r\n");
	else if (h->status >= 200 && close)
		put_str(&w, "Connection: close\r\n");
	else if (h->status >= 200 && client_minor == 0)
		put_str(&w, "Connection: keep-alive\r\n");
	put(&w, "\r\n", 2);
	return wbuf_result(&w);
}

static const struct {
	int status;
	const char *text;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http1_reason(int status)
{
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].text;
	return "Unknown";
}

ssize_t http1_error_response(int status, int close, char *out, size_t cap)
{
	return http1_error_response_with(status, close, NULL, out, cap);
}

ssize_t http1_error_response_with(int status, int close, const char *field, char *out, size_t cap)
{
	char body[512];
	struct wbuf b = {body, 0, sizeof(body), 0};
	struct wbuf w = {out, 0, cap, 0};
	const char *reason = http1_reason(status);

	if (status < 200 || status > 599 || status == 204 || status == 304)
		return -1;
	put_str(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
	put_u64(&b, (uint64_t)status);
	put(&b, " ", 1);
	put_str(&b, reason);
	put_str(&b, "</title></head>\n<body><h1>");
	put_u64(&b, (uint64_t)status);
	put(&b, " ", 1);
	put_str(&b, reason);
	put_str(&b, "</h1>\n<hr><p>relais</p></body></html>\n");
	if (b.full)
		return -1;

	put_str(&w, "HTTP/1.1 ");
	put_u64(&w, (uint64_t)status);
	put(&w, " ", 1);
	put_str(&w, reason);
	put_str(&w, "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ");
	put_u64(&w, b.len);
	put(&w, "\r\n", 2);
	/* RFC 9110 §15.5.6: a 405 lists the methods that are allowed.  The
	 * edge sends it for CONNECT only and forwards the usual methods. */
	if (status == 405)
		put_str(&w, "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n");
	if (field) {
		put_str(&w, field);
		put(&w, "\r\n", 2);
	}
	if (close)
		put_str(&w, "Connection: close\r\n");
	put_str(&w, "Cache-Control: no-store\r\n\r\n");
	put(&w, body, b.len);
	return wbuf_result(&w);
}

/* ------------------------------------------------------------ routing host */

/*
 * Normalize uri-host [ ":" port ] (RFC 3986 §3.2.2) into out: lower case,
 * port and one trailing dot dropped; reg-name limited to letters, digits,
 * '-' and '.' with no empty label; IPv6 literal kept in brackets.
 */
static int normalize_authority(const char *p, size_t n, char *out, size_t cap)
{
	size_t i = 0, o = 0, hostend, j;

	if (n == 0)
		return -1;
	if (p[0] == '[') {
		int colons = 0;

		for (i = 1; i < n && p[i] != ']'; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c == ':')
				colons++;
			else if (hex_digit(c) < 0 && c != '.')
				return -1;
		}
		if (i == n || i == 1 || colons < 2)
			return -1;
		hostend = ++i;
	} else {
		while (i < n && p[i] != ':')
			i++;
		hostend = i;
		if (hostend > 0 && p[hostend - 1] == '.')
			hostend--; /* "example.com." is example.com */
		if (hostend == 0 || p[hostend - 1] == '.')
			return -1;
		for (j = 0; j < hostend; j++) {
			unsigned char c = lower((unsigned char)p[j]);
			if (c == '.') {
				if (j == 0 || p[j - 1] == '.')
					return -1;
			} else if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '-')) {
				return -1;
			}
		}
	}
	if (i < n) {
		/* port = *DIGIT, and it has to be a real one when present. */
		unsigned long port = 0;

		if (p[i] != ':')
			return -1;
		for (j = i + 1; j < n; j++) {
			if (!is_digit((unsigned char)p[j]) || j - i > 5)
				return -1;
			port = port * 10 + (unsigned long)(p[j] - '0');
		}
		if (port > 65535)
			return -1;
	}
	if (hostend > 253 || hostend + 1 > cap)
		return -1;
	for (o = 0; o < hostend; o++)
		out[o] = (char)lower((unsigned char)p[o]);
	out[o] = '\0';
	return 0;
}

int http1_route_host(const struct http1_head *h, char *out, size_t cap)
{
	const struct http1_header *host = NULL;
	const char *auth;
	size_t alen, i, count = 0;

	if (cap > 0)
		out[0] = '\0';
	for (i = 0; i < h->nheaders; i++) {
		if (name_is(&h->headers[i], "Host")) {
			host = &h->headers[i];
			count++;
		}
	}
	/* RFC 9112 §3.2: 400 for HTTP/1.1 without Host and for any repeated Host. */
	if (count > 1 || (count == 0 && h->minor == 1))
		return -1;
	if (h->target && h->target_len > 0 && h->target[0] != '/' &&
	    !(h->target_len == 1 && h->target[0] == '*')) {
		/* §3.2.2: the target's authority wins over Host; only http(s) here. */
		if (!method_is(h, "CONNECT") &&
		    !(h->target_len >= 7 && ieq(h->target, 7, "http://")) &&
		    !(h->target_len >= 8 && ieq(h->target, 8, "https://")))
			return -1;
		if (target_authority(h, &auth, &alen) < 0)
			return -1;
		if (memchr(auth, '@', alen))
			return -1; /* userinfo: deprecated, a phishing aid (RFC 9110 §4.2.4) */
		return normalize_authority(auth, alen, out, cap);
	}
	if (!host)
		return -1;
	return normalize_authority(host->value, host->value_len, out, cap);
}
