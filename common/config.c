/*
 * common/config.c - edge.yaml and agent.yaml.
 *
 * The file is read whole (bounded), loaded with libyaml's document API, and
 * walked by a schema written as code: one function per mapping, each key
 * looked up in a fixed table so that unknown and duplicated keys are caught.
 * Errors are collected with their position and printed sorted by position at
 * the end, so the output reads top to bottom like the file.  Any error frees
 * everything: a config is either fully valid or not returned at all.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <yaml.h>

#include "hostpat.h"
#include "keys.h"
#include "log.h"

#define CONFIG_FILE_MAX   (1u << 20) /* a config file larger than 1 MiB is a mistake */
#define CFG_MAXKEYS       16
#define CFG_DEPTH_MAX     64          /* relais files nest 4 deep; libyaml is slow past this */
#define CFG_NODES_MAX     200000      /* scalars, lists and mappings in one file */
#define CFG_DURATION_MAX  2147483647u /* ms; fits the int timers of event loops */
#define CFG_HEADER_MIN    1024u
#define CFG_HEADER_MAX    (1u << 20)
#define CFG_PATH_MAX      255
#define DEFAULT_TUNNEL    "/relais"
#define HOST_TEXT_MAX     256 /* to_host / edge_host buffers */
#define BAD_ADDR_HINT     "(expected IPv4:PORT or [IPv6]:PORT)"
#define BAD_RANGE_HINT    "(expected tcp/PORT, udp/PORT or tcp/LOW-HIGH)"
#define BAD_NAME_HINT     "(1 to 63 characters of A-Z a-z 0-9 _ . -)"
#define BAD_DURATION_HINT "(expected seconds, or a number with ms, s, m or h)"
#define BAD_SIZE_HINT     "(expected bytes, or a number with k, m or g)"

struct cfg_error {
	size_t line, col, seq;
	char *msg;
};

/* Parser state for one load: the file name, the document, collected errors. */
struct cfgp {
	const char *file;
	yaml_document_t doc;
	struct cfg_error *errs;
	size_t nerrs, cap;
	const yaml_node_t *listen_at[4]; /* edge: nodes of the EL_* addresses */
	const yaml_node_t *tunnel_map;   /* edge: tunnel mapping, cert and key values */
	const yaml_node_t *tunnel_cert_at, *tunnel_key_at;
	int oom; /* an allocation failed: the load fails, the process goes on */
};

/* The edge's listening addresses, for the conflict check. */
enum { EL_HTTP, EL_HTTPS, EL_ADMIN, EL_TUNNEL };

/* The keys of one mapping, looked up in a NULL-terminated table. */
struct cfg_map {
	yaml_node_t *node; /* NULL for an empty document */
	const char *const *keys;
	yaml_node_t *key[CFG_MAXKEYS];
	yaml_node_t *val[CFG_MAXKEYS];
};

/* Quoted user text for messages: control bytes escaped, long text cut. */
struct cfg_q {
	char s[100];
};

static struct cfg_q cfg_quote(const char *in)
{
	struct cfg_q q;
	size_t o = 0;

	for (; *in != '\0' && o < 80; in++) {
		unsigned char c = (unsigned char)*in;

		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(q.s + o, sizeof(q.s) - o, "\\x%02x", c);
		else
			q.s[o++] = (char)c;
	}
	if (*in != '\0')
		snprintf(q.s + o, sizeof(q.s) - o, "...");
	else
		q.s[o] = '\0';
	return q;
}

/*
 * Allocation failures are input errors here, not invariants: a reload of a
 * huge file must fail and leave the running process alone.  They return
 * NULL and mark the load failed ("out of memory" when errors are printed).
 */
static void *cfg_calloc(struct cfgp *p, size_t n, size_t size)
{
	void *m = calloc(n != 0 ? n : 1, size);

	if (m == NULL)
		p->oom = 1;
	return m;
}

static char *cfg_strdup(struct cfgp *p, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		p->oom = 1;
	return d;
}

static void cfg_verr_at(struct cfgp *p, size_t line, size_t col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void cfg_verr_at(struct cfgp *p, size_t line, size_t col, const char *fmt, va_list ap)
{
	struct cfg_error *e;

	if (p->nerrs == p->cap) {
		size_t ncap = p->cap != 0 ? p->cap * 2 : 8;

		e = realloc(p->errs, ncap * sizeof(*e));
		if (e == NULL) {
			p->oom = 1;
			return;
		}
		p->errs = e;
		p->cap = ncap;
	}
	e = &p->errs[p->nerrs];
	e->line = line;
	e->col = col;
	e->seq = p->nerrs;
	if (vasprintf(&e->msg, fmt, ap) < 0) {
		p->oom = 1;
		return;
	}
	/* Text quoted with cfg_quote is escaped already; this catches what
	 * another module wrote (a key file's name in keys_load_private's error). */
	for (char *c = e->msg; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	p->nerrs++;
}

static void cfg_err_at(struct cfgp *p, size_t line, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cfg_err_at(struct cfgp *p, size_t line, size_t col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_verr_at(p, line, col, fmt, ap);
	va_end(ap);
}

/* An error at node n (1-based; libyaml marks are 0-based).  n NULL: 1:1. */
static void cfg_err(struct cfgp *p, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_err(struct cfgp *p, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (n != NULL)
		cfg_verr_at(p, n->start_mark.line + 1, n->start_mark.column + 1, fmt, ap);
	else
		cfg_verr_at(p, 1, 1, fmt, ap);
	va_end(ap);
}

static int cfg_error_cmp(const void *a, const void *b)
{
	const struct cfg_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* 1 when the load failed: errors were found or memory ran out. */
static int cfg_failed(const struct cfgp *p)
{
	return p->nerrs > 0 || p->oom;
}

/* Print the collected errors in file order; returns how many there were. */
static int cfg_flush(struct cfgp *p)
{
	int n = (int)p->nerrs + (p->oom != 0);

	if (p->nerrs > 1)
		qsort(p->errs, p->nerrs, sizeof(p->errs[0]), cfg_error_cmp);
	for (size_t i = 0; i < p->nerrs; i++) {
		fprintf(stderr, "%s:%zu:%zu: %s\n", p->file, p->errs[i].line, p->errs[i].col,
		        p->errs[i].msg);
		free(p->errs[i].msg);
	}
	if (p->oom)
		fprintf(stderr, "%s:0:0: out of memory\n", p->file);
	fflush(stderr);
	free(p->errs);
	p->errs = NULL;
	p->nerrs = p->cap = 0;
	return n;
}

/* ---- reading the YAML document ---------------------------------------- */

/* 1-based line and column of byte offset off in buf (for reader errors). */
static void cfg_offset_pos(const char *buf, size_t len, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
			(*col)++; /* count characters, not UTF-8 continuation bytes */
		}
	}
}

static void cfg_yaml_error(struct cfgp *p, const yaml_parser_t *ps, const char *buf, size_t len)
{
	const char *problem = ps->problem != NULL ? ps->problem : "YAML error";
	size_t line, col;

	switch (ps->error) {
	case YAML_MEMORY_ERROR:
		p->oom = 1;
		break;
	case YAML_READER_ERROR:
		cfg_offset_pos(buf, len, ps->problem_offset, &line, &col);
		if (ps->problem_value != -1)
			cfg_err_at(p, line, col, "%s (byte 0x%02x)", problem, ps->problem_value);
		else
			cfg_err_at(p, line, col, "%s", problem);
		break;
	default:
		line = ps->problem_mark.line + 1;
		col = ps->problem_mark.column + 1;
		if (ps->context != NULL)
			cfg_err_at(p, line, col, "%s (%s at %zu:%zu)", problem, ps->context,
			           ps->context_mark.line + 1, ps->context_mark.column + 1);
		else
			cfg_err_at(p, line, col, "%s", problem);
		break;
	}
}

static int cfg_read_file(struct cfgp *p, char **bufp, size_t *lenp)
{
	struct stat st;
	size_t len = 0;
	char *buf;
	int fd;

	/* O_NONBLOCK: a FIFO must not hang the open; only regular files pass. */
	fd = open(p->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		cfg_err_at(p, 0, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		cfg_err_at(p, 0, 0, "cannot open: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_err_at(p, 0, 0, "cannot open: %s",
		           S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
		close(fd);
		return -1;
	}
	buf = cfg_calloc(p, CONFIG_FILE_MAX + 1, 1);
	if (buf == NULL) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cfg_err_at(p, 0, 0, "cannot read: %s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_FILE_MAX) {
			cfg_err_at(p, 0, 0, "file is larger than %u bytes", CONFIG_FILE_MAX);
			goto fail;
		}
	}
	close(fd);
	*bufp = buf;
	*lenp = len;
	return 0;
fail:
	close(fd);
	free(buf);
	return -1;
}

/*
 * The shape of the file, checked on parser events before a document is
 * built: no anchors or aliases (an alias re-walks a subtree, so a few
 * hundred bytes could make the walk copy strings billions of times), nesting
 * at most CFG_DEPTH_MAX deep (libyaml's scanner is quadratic in the depth of
 * flow collections) and at most CFG_NODES_MAX nodes.  The first violation
 * stops the check, like a syntax error.  Returns 0 or -1 (reported).
 */
static int cfg_check_events(struct cfgp *p, const char *buf, size_t len)
{
	yaml_parser_t ps;
	yaml_event_t ev;
	size_t depth = 0, nodes = 0;
	int rc = 1;

	if (!yaml_parser_initialize(&ps)) {
		p->oom = 1;
		return -1;
	}
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	while (rc > 0) {
		const yaml_char_t *anchor = NULL;
		size_t line, col;

		if (!yaml_parser_parse(&ps, &ev)) {
			cfg_yaml_error(p, &ps, buf, len);
			rc = -1;
			break;
		}
		line = ev.start_mark.line + 1;
		col = ev.start_mark.column + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			rc = 0;
			break;
		case YAML_ALIAS_EVENT:
			cfg_err_at(p, line, col, "aliases are not supported ('*%s')",
			           cfg_quote((const char *)ev.data.alias.anchor).s);
			rc = -1;
			break;
		case YAML_SCALAR_EVENT:
			anchor = ev.data.scalar.anchor;
			nodes++;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			anchor = ev.type == YAML_SEQUENCE_START_EVENT
			             ? ev.data.sequence_start.anchor
			             : ev.data.mapping_start.anchor;
			nodes++;
			if (++depth > CFG_DEPTH_MAX) {
				cfg_err_at(p, line, col, "nesting deeper than %d levels",
				           CFG_DEPTH_MAX);
				rc = -1;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		if (rc > 0 && anchor != NULL) {
			cfg_err_at(p, line, col, "anchors and aliases are not supported ('&%s')",
			           cfg_quote((const char *)anchor).s);
			rc = -1;
		}
		if (rc > 0 && nodes > CFG_NODES_MAX) {
			cfg_err_at(p, line, col, "more than %d values in the file", CFG_NODES_MAX);
			rc = -1;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&ps);
	return rc;
}

/* Load the file's single YAML document into p->doc; returns 0 or -1 (reported). */
static int cfg_load_doc(struct cfgp *p)
{
	yaml_parser_t ps;
	yaml_document_t extra;
	char *buf;
	size_t len;
	int rc = -1;

	if (cfg_read_file(p, &buf, &len) < 0)
		return -1;
	if (cfg_check_events(p, buf, len) < 0) {
		free(buf);
		return -1;
	}
	if (!yaml_parser_initialize(&ps)) {
		p->oom = 1;
		free(buf);
		return -1;
	}
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&ps, &p->doc)) {
		cfg_yaml_error(p, &ps, buf, len);
		goto out;
	}
	rc = 0;
	/* A second document ("---") would be silently ignored: refuse it. */
	if (!yaml_parser_load(&ps, &extra)) {
		cfg_yaml_error(p, &ps, buf, len);
		rc = -1;
	} else {
		yaml_node_t *root = yaml_document_get_root_node(&extra);

		if (root != NULL) {
			cfg_err(p, root, "only one YAML document is allowed");
			rc = -1;
		}
		yaml_document_delete(&extra);
	}
	if (rc < 0)
		yaml_document_delete(&p->doc);
out:
	yaml_parser_delete(&ps);
	free(buf);
	return rc;
}

/* ---- node helpers ------------------------------------------------------ */

static const char *cfg_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static int cfg_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n == NULL)
		return 1;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = cfg_text(n);
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static yaml_node_t *cfg_node(struct cfgp *p, int id)
{
	return yaml_document_get_node(&p->doc, id);
}

static size_t cfg_seq_len(const yaml_node_t *seq)
{
	return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static yaml_node_t *cfg_seq_item(struct cfgp *p, const yaml_node_t *seq, size_t i)
{
	return cfg_node(p, seq->data.sequence.items.start[i]);
}

/* Text of key in mapping n when it is a plain string, else NULL (for "where"). */
static const char *cfg_peek(struct cfgp *p, const yaml_node_t *n, const char *key)
{
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = cfg_node(p, pr->key), *v = cfg_node(p, pr->value);

		if (k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
		    strcmp(cfg_text(k), key) == 0 && v->type == YAML_SCALAR_NODE && !cfg_is_null(v))
			return cfg_text(v);
	}
	return NULL;
}

/*
 * Index the pairs of mapping n (NULL: empty) by the key table keys, reporting
 * keys that are not strings, unknown keys and duplicated keys.  where is the
 * phrase naming the mapping in messages ("in tunnel", "at top level").
 */
static void cfg_map_read(struct cfgp *p, yaml_node_t *n, const char *where, const char *const *keys,
                         struct cfg_map *m)
{
	memset(m, 0, sizeof(*m));
	m->node = n;
	m->keys = keys;
	if (n == NULL)
		return;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = cfg_node(p, pr->key), *v = cfg_node(p, pr->value);
		int i;

		if (k->type != YAML_SCALAR_NODE) {
			cfg_err(p, k, "keys must be strings %s", where);
			continue;
		}
		/* "tunnel\0x" must not pass for "tunnel" (strcmp stops at the NUL) */
		if (strlen(cfg_text(k)) != k->data.scalar.length) {
			cfg_err(p, k, "keys must not contain NUL characters %s", where);
			continue;
		}
		for (i = 0; keys[i] != NULL; i++)
			if (strcmp(keys[i], cfg_text(k)) == 0)
				break;
		if (keys[i] == NULL) {
			cfg_err(p, k, "unknown key '%s' %s", cfg_quote(cfg_text(k)).s, where);
			continue;
		}
		if (m->key[i] != NULL) {
			cfg_err(p, k, "duplicate key '%s' (first at %zu:%zu)", keys[i],
			        m->key[i]->start_mark.line + 1, m->key[i]->start_mark.column + 1);
			continue;
		}
		m->key[i] = k;
		m->val[i] = v;
	}
}

/* 1 when key k is present with a non-null value. */
static int cfg_has(const struct cfg_map *m, int k)
{
	return m->key[k] != NULL && !cfg_is_null(m->val[k]);
}

/* Report a required key that is missing or empty; returns 0 when present. */
static int cfg_required(struct cfgp *p, const struct cfg_map *m, int k, const char *where)
{
	if (m->key[k] == NULL) {
		cfg_err(p, m->node, "missing required key '%s' %s", m->keys[k], where);
		return -1;
	}
	if (cfg_is_null(m->val[k])) {
		cfg_err(p, m->val[k], "'%s' must not be empty", m->keys[k]);
		return -1;
	}
	return 0;
}

/*
 * The scalar value of key k: 1 with *out set (owned by the document), 0 when
 * absent or null, -1 when it is a list or mapping ("'KEY' must be WHAT").
 */
static int cfg_scalar(struct cfgp *p, const struct cfg_map *m, int k, const char *what,
                      const char **out)
{
	const yaml_node_t *v = m->val[k];

	if (!cfg_has(m, k))
		return 0;
	if (v->type != YAML_SCALAR_NODE) {
		cfg_err(p, v, "'%s' must be %s", m->keys[k], what);
		return -1;
	}
	if (strlen(cfg_text(v)) != v->data.scalar.length) {
		cfg_err(p, v, "'%s' must not contain NUL characters", m->keys[k]);
		return -1;
	}
	if (v->data.scalar.length == 0) { /* a quoted "" */
		cfg_err(p, v, "'%s' must not be empty", m->keys[k]);
		return -1;
	}
	*out = cfg_text(v);
	return 1;
}

static int cfg_str(struct cfgp *p, const struct cfg_map *m, int k, const char **out)
{
	return cfg_scalar(p, m, k, "a string", out);
}

/* Mapping value of key k, or NULL when absent/null or wrong type (reported). */
static yaml_node_t *cfg_submap(struct cfgp *p, const struct cfg_map *m, int k)
{
	if (!cfg_has(m, k))
		return NULL;
	if (m->val[k]->type != YAML_MAPPING_NODE) {
		cfg_err(p, m->val[k], "'%s' must be a mapping", m->keys[k]);
		return NULL;
	}
	return m->val[k];
}

/* Sequence value of key k, or NULL when absent/null or wrong type (reported
 * as "'KEY' must be a list of WHAT"). */
static yaml_node_t *cfg_list(struct cfgp *p, const struct cfg_map *m, int k, const char *what)
{
	if (!cfg_has(m, k))
		return NULL;
	if (m->val[k]->type != YAML_SEQUENCE_NODE) {
		cfg_err(p, m->val[k], "'%s' must be a list of %s", m->keys[k], what);
		return NULL;
	}
	return m->val[k];
}

/* A list item that must be a string; NULL when not (reported). */
static const char *cfg_list_str(struct cfgp *p, const struct cfg_map *m, int k, yaml_node_t *item)
{
	if (item->type != YAML_SCALAR_NODE || cfg_is_null(item) ||
	    strlen(cfg_text(item)) != item->data.scalar.length) {
		cfg_err(p, item, "'%s' must be a list of strings", m->keys[k]);
		return NULL;
	}
	return cfg_text(item);
}

/* ---- value parsers (pure) ----------------------------------------------- */

/* Decimal digits s[0..n) only, value <= max. */
static int cfg_digits(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int cfg_port(const char *s, size_t n, uint16_t *port)
{
	uint64_t v;

	if (cfg_digits(s, n, 65535, &v) < 0 || v == 0)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int port_range_parse(const char *text, struct port_range *r)
{
	const char *num, *dash;
	uint16_t lo, hi;
	uint8_t kind;

	if (strncmp(text, "tcp/", 4) == 0)
		kind = ROUTE_KIND_TCP;
	else if (strncmp(text, "udp/", 4) == 0)
		kind = ROUTE_KIND_UDP;
	else
		return -1;
	num = text + 4;
	dash = strchr(num, '-');
	if (dash == NULL) {
		if (cfg_port(num, strlen(num), &lo) < 0)
			return -1;
		hi = lo;
	} else if (cfg_port(num, (size_t)(dash - num), &lo) < 0 ||
	           cfg_port(dash + 1, strlen(dash + 1), &hi) < 0 || lo > hi) {
		return -1;
	}
	r->kind = kind;
	r->lo = lo;
	r->hi = hi;
	return 0;
}

int port_range_allowed(const struct port_range *r, const struct port_range *allowed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (allowed[i].kind == r->kind && allowed[i].lo <= r->lo && r->hi <= allowed[i].hi)
			return 1;
	return 0;
}

/* "30", "30s", "500ms", "2m", "1h" (a bare number is seconds); > 0. */
static int cfg_parse_duration(const char *s, uint32_t *ms)
{
	static const struct {
		const char *sfx;
		uint64_t mult;
	} units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	size_t n = strspn(s, "0123456789");
	uint64_t v;

	if (cfg_digits(s, n, CFG_DURATION_MAX, &v) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s + n, units[i].sfx) != 0)
			continue;
		if (v == 0 || v > CFG_DURATION_MAX / units[i].mult)
			return -1;
		*ms = (uint32_t)(v * units[i].mult);
		return 0;
	}
	return -1;
}

/* "16384", "16k", "1m", "10g" (1024-based, either case). */
static int cfg_parse_size(const char *s, uint64_t *out)
{
	size_t n = strspn(s, "0123456789");
	uint64_t mult, v;

	if (strcmp(s + n, "") == 0)
		mult = 1;
	else if (strcasecmp(s + n, "k") == 0)
		mult = 1024;
	else if (strcasecmp(s + n, "m") == 0)
		mult = 1024 * 1024;
	else if (strcasecmp(s + n, "g") == 0)
		mult = 1024 * 1024 * 1024;
	else
		return -1;
	if (cfg_digits(s, n, UINT64_MAX / mult, &v) < 0)
		return -1;
	*out = v * mult;
	return 0;
}

static int cfg_parse_bool(const char *s)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
	                                                                       "off"};

	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return 1;
		if (strcasecmp(s, no[i]) == 0)
			return 0;
	}
	return -1;
}

/* Agent names: 1..PROTO_MAX_NAME of [A-Za-z0-9_.-]. */
static int cfg_name_valid(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= PROTO_MAX_NAME &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* URL paths: start with '/', printable ASCII, no spaces, no fragment. */
static int cfg_path_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_PATH_MAX || s[0] != '/')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '#')
			return 0;
	return 1;
}

/*
 * A target host: a DNS name, a dotted IPv4 address or (bracketed) an IPv6
 * address.  Lower-cases host in place.  Something that looks numeric must be
 * a real IPv4 address, so that "1.2.3" is not sent to the resolver.
 */
static int cfg_host_ok(char *host, int bracketed)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (bracketed)
		return inet_pton(AF_INET6, host, &a6) == 1;
	host_normalize(host);
	if (strspn(host, "0123456789.") == strlen(host))
		return inet_pton(AF_INET, host, &a4) == 1;
	return host_valid(host);
}

/*
 * Parse "HOST[:PORT]" / "[V6][:PORT]" from s[0..n) into host (no brackets)
 * and *port.  The port may be left out only when defport is not 0.
 */
static int cfg_parse_hostport(const char *s, size_t n, char host[HOST_TEXT_MAX], uint16_t *port,
                              uint16_t defport)
{
	const char *hend, *rest;
	size_t hlen, skip = 0;
	int bracketed = n > 0 && s[0] == '[';

	if (bracketed) {
		hend = memchr(s, ']', n);
		if (hend == NULL)
			return -1;
		skip = 1;
		rest = hend + 1;
	} else {
		hend = memchr(s, ':', n);
		if (hend == NULL)
			hend = s + n;
		rest = hend;
	}
	hlen = (size_t)(hend - s) - skip;
	if (hlen == 0 || hlen >= HOST_TEXT_MAX || memchr(s + skip, '\0', hlen) != NULL)
		return -1;
	memcpy(host, s + skip, hlen);
	host[hlen] = '\0';
	if (!cfg_host_ok(host, bracketed))
		return -1;
	if (rest == s + n) {
		*port = defport;
		return defport != 0 ? 0 : -1;
	}
	if (*rest != ':')
		return -1;
	return cfg_port(rest + 1, (size_t)(s + n - rest - 1), port);
}

/* ---- typed getters -------------------------------------------------------- */

static void cfg_get_addr(struct cfgp *p, const struct cfg_map *m, int k, struct addr *a, int *has)
{
	const char *s;

	if (cfg_scalar(p, m, k, "an address", &s) != 1)
		return;
	if (addr_parse(s, a) < 0) {
		cfg_err(p, m->val[k], "bad address '%s' " BAD_ADDR_HINT, cfg_quote(s).s);
		return;
	}
	if (has != NULL)
		*has = 1;
}

/* strdup of a non-empty string value into *out (replacing a default). */
static void cfg_get_strdup(struct cfgp *p, const struct cfg_map *m, int k, char **out)
{
	const char *s;

	if (cfg_str(p, m, k, &s) != 1)
		return;
	free(*out);
	*out = cfg_strdup(p, s);
}

/* A path that must name a readable file; the error is at the key. */
/* What a file named in the configuration must be (cfg_get_readable). */
enum cfg_file { CFG_FILE_ANY, CFG_FILE_SECRET, CFG_FILE_CA };

/* 1 when the PEM file at fd (size bytes long) holds at least one
 * certificate.  Empty files (and /proc's, which say so) are not read. */
static int cfg_has_certificate(int fd, off_t size)
{
	int copy, found;
	FILE *f;
	X509 *x;

	if (size <= 0 || size > 16 * 1024 * 1024 || (copy = dup(fd)) < 0)
		return 0;
	f = fdopen(copy, "r");
	if (!f) {
		close(copy);
		return 0;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	found = x != NULL;
	X509_free(x);
	return found;
}

/*
 * A file the program reads later (certificates, keys): it must be a regular
 * file readable now, a private key (CFG_FILE_SECRET) not accessible by
 * others (group is allowed, as Debian's ssl-cert group has it), a trust
 * anchor (CFG_FILE_CA) hold a PEM certificate -- so `-t` and a reload
 * refuse what would fail, or stop the program, once in use.
 */
static void cfg_get_readable(struct cfgp *p, const struct cfg_map *m, int k, char **out,
                             enum cfg_file what)
{
	struct stat st;
	const char *s;
	int fd;

	if (cfg_str(p, m, k, &s) != 1)
		return;
	fd = open(s, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		cfg_err(p, m->key[k], "cannot read '%s': %s", cfg_quote(s).s, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0) {
		cfg_err(p, m->key[k], "cannot read '%s': %s", cfg_quote(s).s, strerror(errno));
		close(fd);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_err(p, m->key[k], "cannot read '%s': %s", cfg_quote(s).s,
		        S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
		close(fd);
		return;
	}
	if (what == CFG_FILE_SECRET && (st.st_mode & (S_IROTH | S_IWOTH | S_IXOTH))) {
		cfg_err(p, m->key[k],
		        "private key '%s' is accessible by others (mode %03o): chmod 600 it",
		        cfg_quote(s).s, (unsigned)(st.st_mode & 0777));
		close(fd);
		return;
	}
	if (what == CFG_FILE_CA && !cfg_has_certificate(fd, st.st_size)) {
		cfg_err(p, m->key[k], "cannot use '%s' as '%s': no PEM certificate in it",
		        cfg_quote(s).s, m->keys[k]);
		close(fd);
		return;
	}
	close(fd);
	free(*out);
	*out = cfg_strdup(p, s);
}

static void cfg_get_duration(struct cfgp *p, const struct cfg_map *m, int k, uint32_t *ms)
{
	const char *s;

	if (cfg_scalar(p, m, k, "a duration", &s) != 1)
		return;
	if (cfg_parse_duration(s, ms) < 0)
		cfg_err(p, m->val[k], "bad duration '%s' for '%s' " BAD_DURATION_HINT,
		        cfg_quote(s).s, m->keys[k]);
}

static void cfg_get_size(struct cfgp *p, const struct cfg_map *m, int k, uint64_t *out)
{
	const char *s;

	if (cfg_scalar(p, m, k, "a size", &s) != 1)
		return;
	if (cfg_parse_size(s, out) < 0)
		cfg_err(p, m->val[k], "bad size '%s' for '%s' " BAD_SIZE_HINT, cfg_quote(s).s,
		        m->keys[k]);
}

static void cfg_get_bool(struct cfgp *p, const struct cfg_map *m, int k, int *out)
{
	const char *s;
	int b;

	if (cfg_scalar(p, m, k, "true or false", &s) != 1)
		return;
	b = cfg_parse_bool(s);
	if (b < 0)
		cfg_err(p, m->val[k], "'%s' must be true or false, not '%s'", m->keys[k],
		        cfg_quote(s).s);
	else
		*out = b;
}

/* A count 0..max; what says what 0 means. */
static void cfg_get_count(struct cfgp *p, const struct cfg_map *m, int k, uint32_t max,
                          const char *what, uint32_t *out)
{
	const char *s;

	if (!cfg_has(m, k) || cfg_scalar(p, m, k, "a number", &s) != 1)
		return;
	if (strspn(s, "0123456789") == strlen(s) && strlen(s) <= 9 && (uint32_t)atol(s) <= max)
		*out = (uint32_t)atol(s);
	else
		cfg_err(p, m->val[k], "'%s' must be a number (0..%u; 0: %s)", m->keys[k], max,
		        what);
}

static void cfg_get_log_level(struct cfgp *p, const struct cfg_map *m, int k, int *out)
{
	const char *s;
	int lvl;

	if (cfg_str(p, m, k, &s) != 1)
		return;
	lvl = log_level_parse(s);
	if (lvl < 0)
		cfg_err(p, m->val[k], "bad log_level '%s' (expected error, warn, info or debug)",
		        cfg_quote(s).s);
	else
		*out = lvl;
}

static void cfg_get_proxy(struct cfgp *p, const struct cfg_map *m, int k, int *out)
{
	const char *s;

	if (cfg_str(p, m, k, &s) != 1)
		return;
	if (strcmp(s, "v1") == 0)
		*out = PROXY_V1;
	else if (strcmp(s, "v2") == 0)
		*out = PROXY_V2;
	else if (strcmp(s, "none") == 0)
		*out = PROXY_NONE;
	else
		cfg_err(p, m->val[k], "bad proxy_protocol '%s' (expected v1, v2 or none)",
		        cfg_quote(s).s);
}

/* ---- edge.yaml -------------------------------------------------------------- */

enum {
	E_LISTEN,
	E_TUNNEL,
	E_ADMIN,
	E_AGENTS,
	E_ACCESS_LOG,
	E_LOG_LEVEL,
	E_HTTP,
	E_TLS,
	E_ACCESS,
	E_REDIRECTS,
	E_UNKNOWN
};
static const char *const edge_keys[] = {"listen",     "tunnel",    "admin",         "agents",
                                        "access_log", "log_level", "http",          "tls",
                                        "access",     "redirects", "unknown_hosts", NULL};

enum { TL_CERT_DIR, TL_ACME };
static const char *const tls_keys[] = {"cert_dir", "acme", NULL};

enum { AC_DIRECTORY, AC_EMAIL, AC_ACCEPT_TERMS, AC_CA, AC_RENEW };
static const char *const acme_keys[] = {"directory",         "email", "accept_terms", "ca",
                                        "renew_before_days", NULL};

enum { L_HTTP, L_HTTPS, L_STREAMS, L_MAX_PER_CLIENT };
static const char *const listen_keys[] = {"http", "https", "streams", "max_connections_per_client",
                                          NULL};

enum { T_LISTEN, T_HOSTNAME, T_PATH, T_CERT, T_KEY };
static const char *const tunnel_keys[] = {"listen", "hostname", "path", "cert", "key", NULL};

enum { AD_LISTEN };
static const char *const admin_keys[] = {"listen", NULL};

enum { H_HEADER_TIMEOUT, H_IDLE_TIMEOUT, H_UPSTREAM_TIMEOUT, H_MAX_HEADER, H_MAX_BODY };
static const char *const http_keys[] = {"header_timeout",  "idle_timeout",  "upstream_timeout",
                                        "max_header_size", "max_body_size", NULL};

enum { AG_NAME, AG_KEY, AG_HOSTS, AG_PORTS, AG_MAX_CERTS };
static const char *const agent_entry_keys[] = {"name", "key", "hosts", "ports", "max_certificates",
                                               NULL};

enum { AL_HOSTS, AL_PORTS, AL_ALLOW, AL_DENY, AL_USERS, AL_SATISFY };
static const char *const access_keys[] = {"hosts", "ports",   "allow", "deny",
                                          "users", "satisfy", NULL};

enum { U_NAME, U_PASSWORD };
static const char *const user_keys[] = {"name", "password", NULL};

enum { UH_ANSWER, UH_PAGE, UH_TO };
static const char *const unknown_keys[] = {"answer", "page", "to", NULL};

enum { RD_HOST, RD_TO, RD_CODE, RD_KEEP_PATH };
static const char *const redirect_keys[] = {"host", "to", "code", "keep_path", NULL};

/* listen.streams: the IP addresses TCP/UDP stream ports are opened on. */
/* The next listen.streams address (ip, at item) against those before it: a
 * port is opened on each, and the same address twice, or a wildcard and
 * another address of its family, cannot both listen on one port.  0 when
 * it fits. */
static int edge_stream_addr_clash(struct cfgp *p, const yaml_node_t *item,
                                  const struct edge_config *cfg, const char *ip)
{
	const struct addr *a = &cfg->streams[cfg->nstreams];

	for (size_t j = 0; j < cfg->nstreams; j++) {
		const struct addr *o = &cfg->streams[j];

		if (o->ss.ss_family != a->ss.ss_family)
			continue;
		if (addr_equal(o, a)) {
			cfg_err(p, item, "'%s' is listed twice in listen.streams", cfg_quote(ip).s);
			return -1;
		}
		if (addr_is_any(o) || addr_is_any(a)) {
			cfg_err(p, item,
			        "'%s' overlaps another address in listen.streams (a wildcard "
			        "address takes every address of its family)",
			        cfg_quote(ip).s);
			return -1;
		}
	}
	return 0;
}

static void edge_listen_streams(struct cfgp *p, const struct cfg_map *m, struct edge_config *cfg)
{
	yaml_node_t *list;
	char text[ADDR_TEXT_MAX + 8];

	if (!cfg_has(m, L_STREAMS))
		return;
	list = cfg_list(p, m, L_STREAMS, "IP addresses");
	if (list == NULL)
		return;
	cfg->nstreams = 0;
	for (size_t i = 0; i < cfg_seq_len(list); i++) {
		yaml_node_t *item = cfg_seq_item(p, list, i);
		const char *ip = cfg_list_str(p, m, L_STREAMS, item);

		if (ip == NULL)
			continue;
		snprintf(text, sizeof(text), strchr(ip, ':') ? "[%s]:1" : "%s:1", ip);
		if (cfg->nstreams >= sizeof(cfg->streams) / sizeof(cfg->streams[0])) {
			cfg_err(p, item, "at most 4 addresses in listen.streams");
			break;
		}
		if (addr_parse(text, &cfg->streams[cfg->nstreams]) < 0) {
			cfg_err(p, item, "bad IP address '%s'", cfg_quote(ip).s);
			continue;
		}
		if (edge_stream_addr_clash(p, item, cfg, ip) == 0)
			cfg->nstreams++;
	}
	if (cfg_seq_len(list) == 0)
		cfg_err(p, list,
		        "listen.streams lists no address (leave it out for 0.0.0.0; an agent "
		        "without 'ports' opens no stream port)");
}

static void edge_listen(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *n = cfg_submap(p, top, E_LISTEN);
	struct cfg_map m;

	if (n == NULL)
		return;
	cfg_map_read(p, n, "in listen", listen_keys, &m);
	cfg_get_addr(p, &m, L_HTTP, &cfg->http, &cfg->has_http);
	cfg_get_addr(p, &m, L_HTTPS, &cfg->https, &cfg->has_https);
	p->listen_at[EL_HTTP] = m.val[L_HTTP];
	p->listen_at[EL_HTTPS] = m.val[L_HTTPS];
	edge_listen_streams(p, &m, cfg);
	cfg_get_count(p, &m, L_MAX_PER_CLIENT, CFG_MAX_PER_CLIENT_MAX, "no limit",
	              &cfg->max_conns_per_client);
}

static void edge_tunnel(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *n;
	struct cfg_map m;
	const char *s;

	if (cfg_required(p, top, E_TUNNEL, "at top level") < 0)
		return;
	n = cfg_submap(p, top, E_TUNNEL);
	if (n == NULL)
		return;
	cfg_map_read(p, n, "in tunnel", tunnel_keys, &m);
	if (cfg_required(p, &m, T_LISTEN, "in tunnel") == 0)
		cfg_get_addr(p, &m, T_LISTEN, &cfg->tunnel.listen, NULL);
	p->listen_at[EL_TUNNEL] = m.val[T_LISTEN];
	if (cfg_str(p, &m, T_HOSTNAME, &s) == 1) {
		char *h = cfg_strdup(p, s);

		if (h == NULL)
			return;
		host_normalize(h);
		if (!host_valid(h)) {
			cfg_err(p, m.val[T_HOSTNAME], "bad host name '%s'", cfg_quote(s).s);
			free(h);
		} else {
			cfg->tunnel.hostname = h;
		}
	}
	if (cfg_str(p, &m, T_PATH, &s) == 1) {
		if (!cfg_path_valid(s))
			cfg_err(p, m.val[T_PATH],
			        "bad tunnel path '%s' (must start with '/', printable, no spaces)",
			        cfg_quote(s).s);
		else
			cfg_get_strdup(p, &m, T_PATH, &cfg->tunnel.path);
	}
	/* Optional when ACME can obtain a certificate for tunnel.hostname
	 * (checked in edge_tls_check once the tls section is read). */
	cfg_get_readable(p, &m, T_CERT, &cfg->tunnel.cert, CFG_FILE_ANY);
	cfg_get_readable(p, &m, T_KEY, &cfg->tunnel.key, CFG_FILE_SECRET);
	p->tunnel_map = n;
	/* "cert:" with no value counts as absent, like any key */
	p->tunnel_cert_at = cfg_has(&m, T_CERT) ? m.val[T_CERT] : NULL;
	p->tunnel_key_at = cfg_has(&m, T_KEY) ? m.val[T_KEY] : NULL;
}

static void edge_tls(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *n = cfg_submap(p, top, E_TLS), *an;
	struct cfg_map m, am;
	const char *s;
	int terms = 0;

	if (n == NULL)
		return;
	cfg_map_read(p, n, "in tls", tls_keys, &m);
	cfg_get_strdup(p, &m, TL_CERT_DIR, &cfg->tls.cert_dir);
	an = cfg_submap(p, &m, TL_ACME);
	if (an == NULL)
		return;
	cfg_map_read(p, an, "in tls.acme", acme_keys, &am);
	cfg->tls.acme = 1;
	cfg->tls.acme_renew_days = 30;
	if (cfg_required(p, &am, AC_DIRECTORY, "in tls.acme") == 0 &&
	    cfg_str(p, &am, AC_DIRECTORY, &s) == 1) {
		if (strncmp(s, "https://", 8) != 0 || !cfg_path_valid(s + 7))
			cfg_err(p, am.val[AC_DIRECTORY],
			        "bad ACME directory URL '%s' (expected https://...)",
			        cfg_quote(s).s);
		else
			cfg_get_strdup(p, &am, AC_DIRECTORY, &cfg->tls.acme_directory);
	}
	if (cfg_str(p, &am, AC_EMAIL, &s) == 1) {
		if (!strchr(s, '@') || strpbrk(s, " \t\"<>,;") || strlen(s) > 200)
			cfg_err(p, am.val[AC_EMAIL], "bad email address '%s'", cfg_quote(s).s);
		else
			cfg_get_strdup(p, &am, AC_EMAIL, &cfg->tls.acme_email);
	}
	cfg_get_bool(p, &am, AC_ACCEPT_TERMS, &terms);
	if (!terms)
		cfg_err(p, an,
		        "ACME needs 'accept_terms: true' (you accept the CA's terms of service)");
	cfg_get_readable(p, &am, AC_CA, &cfg->tls.acme_ca, CFG_FILE_CA);
	if (cfg_has(&am, AC_RENEW)) {
		uint32_t ms;

		if (cfg_str(p, &am, AC_RENEW, &s) == 1 && cfg_parse_duration(s, &ms) == 0 &&
		    strspn(s, "0123456789") == strlen(s) && atoi(s) >= 1 && atoi(s) <= 365)
			cfg->tls.acme_renew_days = (uint32_t)atoi(s);
		else
			cfg_err(p, am.val[AC_RENEW],
			        "'renew_before_days' must be a number of days (1..365)");
	}
	if (!cfg->tls.cert_dir)
		cfg_err(p, an, "ACME needs 'cert_dir' in tls to store certificates");
}

/* tunnel.cert/key: both or neither; neither needs ACME and tunnel.hostname. */
static void edge_tls_check(struct cfgp *p, struct edge_config *cfg)
{
	if (!p->tunnel_map)
		return;
	if (!p->tunnel_cert_at != !p->tunnel_key_at) {
		cfg_err(p, p->tunnel_map, "missing required key '%s' in tunnel",
		        p->tunnel_cert_at ? "key" : "cert");
	} else if (!p->tunnel_cert_at && !(cfg->tls.acme && cfg->tunnel.hostname)) {
		cfg_err(
		    p, p->tunnel_map,
		    "missing required key 'cert' in tunnel (or set tunnel.hostname and tls.acme "
		    "to get the certificate automatically)");
	}
}

static int cfg_addr_loopback(const struct addr *a)
{
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

		return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	}
	return 0;
}

static void edge_admin(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *n = cfg_submap(p, top, E_ADMIN);
	struct cfg_map m;

	if (n == NULL)
		return;
	cfg_map_read(p, n, "in admin", admin_keys, &m);
	if (cfg_required(p, &m, AD_LISTEN, "in admin") < 0)
		return;
	cfg_get_addr(p, &m, AD_LISTEN, &cfg->admin, &cfg->has_admin);
	p->listen_at[EL_ADMIN] = m.val[AD_LISTEN];
	/* The status endpoint has no authentication: keep it off the network. */
	if (cfg->has_admin && !cfg_addr_loopback(&cfg->admin)) {
		cfg_err(p, m.val[AD_LISTEN],
		        "admin listen address must be a loopback address (127.0.0.1 or [::1])");
		cfg->has_admin = 0;
	}
}

static void edge_http(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *n = cfg_submap(p, top, E_HTTP);
	struct http_limits *h = &cfg->http_limits;
	struct cfg_map m;
	uint64_t v = h->max_header_bytes;

	if (n == NULL)
		return;
	cfg_map_read(p, n, "in http", http_keys, &m);
	cfg_get_duration(p, &m, H_HEADER_TIMEOUT, &h->header_timeout_ms);
	cfg_get_duration(p, &m, H_IDLE_TIMEOUT, &h->idle_timeout_ms);
	cfg_get_duration(p, &m, H_UPSTREAM_TIMEOUT, &h->upstream_timeout_ms);
	cfg_get_size(p, &m, H_MAX_HEADER, &v);
	if (v < CFG_HEADER_MIN || v > CFG_HEADER_MAX)
		cfg_err(p, m.val[H_MAX_HEADER], "'max_header_size' must be between 1k and 1m");
	else
		h->max_header_bytes = (uint32_t)v;
	cfg_get_size(p, &m, H_MAX_BODY, &h->max_body_bytes);
}

/* Position of node n as "LINE:COL" for "first at" notes. */
struct cfg_pos {
	char s[48];
};

static struct cfg_pos cfg_pos(const yaml_node_t *n)
{
	struct cfg_pos r;

	snprintf(r.s, sizeof(r.s), "%zu:%zu", n->start_mark.line + 1, n->start_mark.column + 1);
	return r;
}

/*
 * The entries of one list seen so far (agent names, agent keys, route
 * hosts), hashed, so that duplicates are found in linear time: a 1 MiB file
 * holds tens of thousands of entries, and comparing each with all before it
 * stalled a load (or a reload) for seconds.
 */
struct cfg_seen_slot {
	const void *key; /* the entry's bytes, owned by the config; NULL: free slot */
	size_t len, idx;
};

struct cfg_seen {
	struct cfg_seen_slot *slot; /* a power of two of them, at most half used */
	size_t mask;
	yaml_node_t **at; /* at[idx]: where entry idx is, for "first at" */
	size_t n;         /* entries it has room for (idx < n) */
};

/* Room for n entries; an allocation failure only marks the load failed. */
static void cfg_seen_init(struct cfgp *p, struct cfg_seen *s, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	s->slot = cfg_calloc(p, cap, sizeof(*s->slot));
	s->mask = cap - 1;
	s->n = n;
	s->at = cfg_calloc(p, n, sizeof(*s->at));
}

static void cfg_seen_free(struct cfg_seen *s)
{
	free(s->slot);
	free(s->at);
}

/*
 * Record entry idx (< n), whose bytes key[0..len) stay valid while s is
 * used and whose node is at; returns the index of an earlier entry with the
 * same bytes (the first one), or idx.
 */
static size_t cfg_seen_add(struct cfg_seen *s, const void *key, size_t len, size_t idx,
                           yaml_node_t *at)
{
	const unsigned char *b = key;
	uint64_t h = 14695981039346656037u; /* FNV-1a */

	if (s->slot == NULL || s->at == NULL || idx >= s->n)
		return idx; /* out of memory (the load fails anyway), or not counted in */
	s->at[idx] = at;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211u;
	for (size_t i = (size_t)h & s->mask;; i = (i + 1) & s->mask) {
		struct cfg_seen_slot *sl = &s->slot[i];

		if (sl->key == NULL) {
			sl->key = key;
			sl->len = len;
			sl->idx = idx;
			return idx;
		}
		if (sl->len == len && memcmp(sl->key, key, len) == 0)
			return sl->idx;
	}
}

/*
 * A list of strings at key k, each parsed by parse into its slot of an
 * array of items of size bytes (parse reports its own error and returns -1
 * to leave the item out).  At most max items (0: any number).  Returns the
 * array (NULL when absent or on error) and its item count in *n.
 */
typedef int (*cfg_item_fn)(struct cfgp *p, const yaml_node_t *item, const char *s, void *slot);

static void *cfg_get_list(struct cfgp *p, const struct cfg_map *m, int k, size_t size, size_t max,
                          cfg_item_fn parse, size_t *n)
{
	yaml_node_t *seq = cfg_list(p, m, k, "strings");
	char *out;

	if (seq == NULL)
		return NULL;
	if (max != 0 && cfg_seq_len(seq) > max) {
		cfg_err(p, seq, "'%s' lists %zu items, at most %zu", m->keys[k], cfg_seq_len(seq),
		        max);
		return NULL;
	}
	out = cfg_calloc(p, cfg_seq_len(seq), size);
	for (size_t i = 0; out != NULL && i < cfg_seq_len(seq); i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);
		const char *s = cfg_list_str(p, m, k, item);

		if (s != NULL && parse(p, item, s, out + *n * size) == 0)
			(*n)++;
	}
	return out;
}

/* A host pattern, lower-cased and validated, into a char *. */
static int cfg_item_host(struct cfgp *p, const yaml_node_t *item, const char *s, void *slot)
{
	char *h = cfg_strdup(p, s);

	if (h == NULL)
		return -1;
	host_normalize(h);
	if (!hostpat_valid(h)) {
		cfg_err(p, item, "bad host pattern '%s'", cfg_quote(s).s);
		free(h);
		return -1;
	}
	*(char **)slot = h;
	return 0;
}

/* A port range ("tcp/22", "udp/27015-27020") into a struct port_range. */
static int cfg_item_ports(struct cfgp *p, const yaml_node_t *item, const char *s, void *slot)
{
	if (port_range_parse(s, slot) == 0)
		return 0;
	cfg_err(p, item, "bad port range '%s' " BAD_RANGE_HINT, cfg_quote(s).s);
	return -1;
}

/* An IP address or prefix ("10.0.0.0/8", "2001:db8::1") into a struct cidr. */
static int cfg_item_prefix(struct cfgp *p, const yaml_node_t *item, const char *s, void *slot)
{
	if (cidr_parse(s, slot) == 0) {
		/* a dual-stack listener's IPv4 client is matched as IPv4: an
		 * IPv4-mapped prefix would never match anyone */
		const struct cidr *c = slot;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		if (c->family != AF_INET6 || c->bits < 96 || memcmp(c->ip, mapped, 12) != 0)
			return 0;
		cfg_err(p, item, "'%s' is an IPv4 address in IPv6 form: write it as IPv4",
		        cfg_quote(s).s);
		return -1;
	}
	cfg_err(p, item,
	        "bad address or prefix '%s' (expected an IP address, or ADDRESS/BITS with no bit "
	        "set past BITS, e.g. 192.168.1.0/24)",
	        cfg_quote(s).s);
	return -1;
}

/* One entry of agents:; names and keys remember the earlier ones for duplicates. */
static void edge_agent(struct cfgp *p, yaml_node_t *n, size_t idx, struct edge_config *cfg,
                       struct cfg_seen *names, struct cfg_seen *keys)
{
	size_t first;
	struct edge_agent *ag = &cfg->agents[idx];
	char where[128];
	const char *name = cfg_peek(p, n, "name"), *s;
	struct cfg_map m;

	if (name != NULL)
		snprintf(where, sizeof(where), "in agent '%s'", cfg_quote(name).s);
	else
		snprintf(where, sizeof(where), "in agent #%zu", idx + 1);
	cfg_map_read(p, n, where, agent_entry_keys, &m);

	if (cfg_required(p, &m, AG_NAME, where) == 0 && cfg_str(p, &m, AG_NAME, &s) == 1) {
		if (!cfg_name_valid(s)) {
			cfg_err(p, m.val[AG_NAME], "bad agent name '%s' " BAD_NAME_HINT,
			        cfg_quote(s).s);
		} else {
			snprintf(ag->name, sizeof(ag->name), "%s", s);
			first =
			    cfg_seen_add(names, ag->name, strlen(ag->name), idx, m.val[AG_NAME]);
			if (first != idx)
				cfg_err(p, m.val[AG_NAME], "duplicate agent '%s' (first at %s)", s,
				        cfg_pos(names->at[first]).s);
		}
	}
	if (cfg_required(p, &m, AG_KEY, where) == 0 && cfg_str(p, &m, AG_KEY, &s) == 1) {
		if (keys_parse_public(s, ag->key) < 0) {
			cfg_err(p, m.val[AG_KEY],
			        "bad public key (expected ed25519:<base64 of 32 bytes>)");
		} else {
			first = cfg_seen_add(keys, ag->key, KEY_PUB_LEN, idx, m.val[AG_KEY]);
			if (first != idx)
				cfg_err(p, m.val[AG_KEY],
				        "duplicate agent key (first at %s, agent '%s')",
				        cfg_pos(keys->at[first]).s, cfg->agents[first].name);
		}
	}
	ag->hosts = cfg_get_list(p, &m, AG_HOSTS, sizeof(char *), 0, cfg_item_host, &ag->nhosts);
	ag->ports = cfg_get_list(p, &m, AG_PORTS, sizeof(struct port_range), 0, cfg_item_ports,
	                         &ag->nports);
	ag->max_certificates = CFG_MAX_CERTIFICATES_DEFAULT;
	cfg_get_count(p, &m, AG_MAX_CERTS, CFG_MAX_CERTIFICATES_MAX,
	              "no ACME certificates for this agent", &ag->max_certificates);
}

static void edge_agents(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *seq = cfg_list(p, top, E_AGENTS, "mappings");
	struct cfg_seen names, keys;
	size_t n;

	if (seq == NULL)
		return;
	n = cfg_seq_len(seq);
	cfg->agents = cfg_calloc(p, n, sizeof(struct edge_agent));
	cfg_seen_init(p, &names, n);
	cfg_seen_init(p, &keys, n);
	for (size_t i = 0; i < n && !p->oom; i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);

		/* count it first so that config_edge_free sees whatever it holds */
		cfg->nagents = i + 1;
		if (item->type != YAML_MAPPING_NODE) {
			cfg_err(p, item, "'agents' must be a list of mappings");
			continue;
		}
		edge_agent(p, item, i, cfg, &names, &keys);
	}
	cfg_seen_free(&names);
	cfg_seen_free(&keys);
}

/* A list of mappings at key k of at most CFG_MAX_ACCESS entries; NULL if none. */
static yaml_node_t *cfg_entries(struct cfgp *p, const struct cfg_map *top, int k)
{
	yaml_node_t *seq = cfg_list(p, top, k, "mappings");

	if (seq != NULL && cfg_seq_len(seq) > CFG_MAX_ACCESS) {
		cfg_err(p, seq, "'%s' has %zu entries, at most %d", top->keys[k], cfg_seq_len(seq),
		        CFG_MAX_ACCESS);
		return NULL;
	}
	return seq;
}

/*
 * A password hash for access[].users: argon2id as `relais-edge passwd` makes
 * it, between CFG_PWHASH_MIN_* and CFG_PWHASH_MAX_*, one lane (the edge
 * checks it on its event loop: a costlier hash would stall every client,
 * a cheaper one would not resist guessing if the file leaked).
 */
static int cfg_pwhash_ok(const char *h, char *why, size_t cap)
{
	unsigned m, t, par;
	int used = 0;

	if (sscanf(h, "$argon2id$v=19$m=%u,t=%u,p=%u$%n", &m, &t, &par, &used) != 3 || used == 0 ||
	    strlen(h) >= crypto_pwhash_STRBYTES ||
	    crypto_pwhash_str_needs_rehash(h, 1, crypto_pwhash_MEMLIMIT_MIN) < 0) {
		snprintf(why, cap, "not an argon2id hash: make one with 'relais-edge passwd'");
		return 0;
	}
	if (m > CFG_PWHASH_MAX_KIB || t > CFG_PWHASH_MAX_OPS || par != 1) {
		snprintf(
		    why, cap,
		    "too costly to check for each login (m=%u,t=%u,p=%u; at most m=%d,t=%d,p=1): "
		    "make one with 'relais-edge passwd'",
		    m, t, par, CFG_PWHASH_MAX_KIB, CFG_PWHASH_MAX_OPS);
		return 0;
	}
	if (m < CFG_PWHASH_MIN_KIB || t < CFG_PWHASH_MIN_OPS) {
		snprintf(why, cap,
		         "too cheap to resist guessing if the file leaks (m=%u,t=%u; at least "
		         "m=%d,t=%d): "
		         "make one with 'relais-edge passwd'",
		         m, t, CFG_PWHASH_MIN_KIB, CFG_PWHASH_MIN_OPS);
		return 0;
	}
	return 1;
}

/* A user name for HTTP Basic authentication: printable ASCII, no ':' (RFC 7617). */
static int cfg_user_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return 0;
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e || *s == ':')
			return 0;
	return 1;
}

/* access[].users: who may log in with HTTP Basic authentication. */
static void edge_access_users(struct cfgp *p, const struct cfg_map *m, struct edge_access *a)
{
	yaml_node_t *seq = cfg_list(p, m, AL_USERS, "mappings");
	struct cfg_seen names;
	char cost[64] = ""; /* "$argon2id$v=19$m=4096,t=3,p=1$" of the first good hash */

	if (seq == NULL)
		return;
	if (cfg_seq_len(seq) > CFG_MAX_USERS) {
		cfg_err(p, seq, "'users' lists %zu users, at most %d", cfg_seq_len(seq),
		        CFG_MAX_USERS);
		return;
	}
	a->users = cfg_calloc(p, cfg_seq_len(seq), sizeof(struct edge_user));
	cfg_seen_init(p, &names, cfg_seq_len(seq));
	for (size_t i = 0; a->users && i < cfg_seq_len(seq) && !p->oom; i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);
		struct edge_user *u = &a->users[i];
		const char *s;
		char why[200];
		struct cfg_map um;

		a->nusers = i + 1;
		if (item->type != YAML_MAPPING_NODE) {
			cfg_err(p, item, "'users' must be a list of mappings");
			continue;
		}
		cfg_map_read(p, item, "in a user", user_keys, &um);
		if (cfg_required(p, &um, U_NAME, "in a user") == 0 &&
		    cfg_str(p, &um, U_NAME, &s) == 1) {
			size_t first;

			if (!cfg_user_name_ok(s)) {
				cfg_err(p, um.val[U_NAME],
				        "bad user name '%s' (1 to 64 printable ASCII characters, "
				        "no ':')",
				        cfg_quote(s).s);
			} else {
				u->name = cfg_strdup(p, s);
				first = cfg_seen_add(&names, s, strlen(s), i, um.val[U_NAME]);
				if (first != i)
					cfg_err(p, um.val[U_NAME],
					        "duplicate user '%s' (first at %s)", cfg_quote(s).s,
					        cfg_pos(names.at[first]).s);
			}
		}
		if (cfg_required(p, &um, U_PASSWORD, "in a user") == 0 &&
		    cfg_str(p, &um, U_PASSWORD, &s) == 1) {
			if (!cfg_pwhash_ok(s, why, sizeof(why)))
				cfg_err(p, um.val[U_PASSWORD], "bad password hash: %s", why);
			else if (cost[0] && strncmp(s, cost, strlen(cost)) != 0)
				/* a wrong name costs the same check as a right one only
				 * when all cost the same */
				cfg_err(
				    p, um.val[U_PASSWORD],
				    "bad password hash: the users of one list must have hashes of "
				    "one cost ('%s' as the first): make them with 'relais-edge "
				    "passwd'",
				    cost);
			else
				u->hash = cfg_strdup(p, s);
			if (u->hash && !cost[0])
				snprintf(cost, sizeof(cost), "%.*s",
				         (int)(strchr(s + 16, '$') - s + 1), s);
		}
	}
	cfg_seen_free(&names);
}

/* access: lists of clients allowed or denied, per host and stream port. */
/* The number of items of the list at key in mapping n (0 when not a list). */
static size_t cfg_peek_len(struct cfgp *p, const yaml_node_t *n, const char *key)
{
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = cfg_node(p, pr->key), *v = cfg_node(p, pr->value);

		if (k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
		    strcmp(cfg_text(k), key) == 0 && v->type == YAML_SEQUENCE_NODE)
			return cfg_seq_len(v);
	}
	return 0;
}

/* The checks of one access entry (#i, at item) that span its keys. */
static void edge_access_check(struct cfgp *p, const struct cfg_map *m, yaml_node_t *item, size_t i)
{
	static const int lists[] = {AL_HOSTS, AL_PORTS, AL_ALLOW, AL_DENY, AL_USERS};

	if (!cfg_has(m, AL_HOSTS) && !cfg_has(m, AL_PORTS))
		cfg_err(p, item, "access entry #%zu names no 'hosts' and no 'ports'", i + 1);
	if (!cfg_has(m, AL_ALLOW) && !cfg_has(m, AL_DENY) && !cfg_has(m, AL_USERS))
		cfg_err(p, item, "access entry #%zu has no 'allow', 'deny' or 'users'", i + 1);
	if (cfg_has(m, AL_USERS) && cfg_has(m, AL_PORTS))
		cfg_err(p, m->key[AL_USERS],
		        "'users' (HTTP passwords) cannot apply to stream 'ports': give them an "
		        "access entry of their own");
	/* "allow: []" would read as "nobody" and let everyone in */
	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
		if (cfg_has(m, lists[k]) && m->val[lists[k]]->type == YAML_SEQUENCE_NODE &&
		    cfg_seq_len(m->val[lists[k]]) == 0)
			cfg_err(p, m->val[lists[k]],
			        "'%s' is empty: list something, or leave it out",
			        m->keys[lists[k]]);
}

/*
 * A host or port range named by two entries: only the first would ever
 * apply (the closest name decides alone), so it is refused.  seen indexes
 * every name so far; *idx counts them.
 */
static void edge_access_dups(struct cfgp *p, const struct cfg_map *m, const struct edge_access *a,
                             struct cfg_seen *hosts, struct cfg_seen *ports, size_t *nh, size_t *np)
{
	for (size_t j = 0; j < a->nhosts; j++, (*nh)++) {
		size_t first =
		    cfg_seen_add(hosts, a->hosts[j], strlen(a->hosts[j]), *nh, m->val[AL_HOSTS]);

		if (first != *nh)
			cfg_err(p, m->val[AL_HOSTS],
			        "host '%s' is named by an access entry already (at %s): one entry "
			        "per host",
			        a->hosts[j], cfg_pos(hosts->at[first]).s);
	}
	for (size_t j = 0; j < a->nports; j++, (*np)++) {
		size_t first =
		    cfg_seen_add(ports, &a->ports[j], sizeof(a->ports[j]), *np, m->val[AL_PORTS]);

		if (first != *np)
			cfg_err(p, m->val[AL_PORTS],
			        "port range %s/%u-%u is named by an access entry already (at %s)",
			        a->ports[j].kind == ROUTE_KIND_UDP ? "udp" : "tcp", a->ports[j].lo,
			        a->ports[j].hi, cfg_pos(ports->at[first]).s);
	}
}

/* access: lists of clients allowed or denied, per host and stream port. */
static void edge_access(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *seq = cfg_entries(p, top, E_ACCESS);
	struct cfg_seen hosts, ports;
	size_t nh = 0, np = 0, th = 0, tp = 0;

	if (seq == NULL)
		return;
	for (size_t i = 0; i < cfg_seq_len(seq); i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);

		if (item->type == YAML_MAPPING_NODE) {
			th += cfg_peek_len(p, item, "hosts");
			tp += cfg_peek_len(p, item, "ports");
		}
	}
	cfg->access = cfg_calloc(p, cfg_seq_len(seq), sizeof(struct edge_access));
	cfg_seen_init(p, &hosts, th);
	cfg_seen_init(p, &ports, tp);
	for (size_t i = 0; cfg->access && i < cfg_seq_len(seq) && !p->oom; i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);
		struct edge_access *a = &cfg->access[i];
		char where[64];
		const char *s;
		struct cfg_map m;

		cfg->naccess = i + 1;
		if (item->type != YAML_MAPPING_NODE) {
			cfg_err(p, item, "'access' must be a list of mappings");
			continue;
		}
		snprintf(where, sizeof(where), "in access entry #%zu", i + 1);
		cfg_map_read(p, item, where, access_keys, &m);
		a->hosts = cfg_get_list(p, &m, AL_HOSTS, sizeof(char *), CFG_MAX_ACCESS_NAMES,
		                        cfg_item_host, &a->nhosts);
		a->ports = cfg_get_list(p, &m, AL_PORTS, sizeof(struct port_range),
		                        CFG_MAX_ACCESS_NAMES, cfg_item_ports, &a->nports);
		a->allow = cfg_get_list(p, &m, AL_ALLOW, sizeof(struct cidr), CFG_MAX_PREFIXES,
		                        cfg_item_prefix, &a->nallow);
		a->deny = cfg_get_list(p, &m, AL_DENY, sizeof(struct cidr), CFG_MAX_PREFIXES,
		                       cfg_item_prefix, &a->ndeny);
		edge_access_users(p, &m, a);
		if (cfg_str(p, &m, AL_SATISFY, &s) == 1) {
			if (strcmp(s, "any") == 0)
				a->satisfy_any = 1;
			else if (strcmp(s, "all") != 0)
				cfg_err(p, m.val[AL_SATISFY],
				        "bad satisfy '%s' (expected all or any)", cfg_quote(s).s);
		}
		edge_access_check(p, &m, item, i);
		edge_access_dups(p, &m, a, &hosts, &ports, &nh, &np);
	}
	cfg_seen_free(&hosts);
	cfg_seen_free(&ports);
}

/* A redirect target: http(s)://host[:port][/path], nothing a Location
 * header could be split by, no query or fragment (the request's are kept). */
static int cfg_redirect_to_valid(const char *to)
{
	size_t skip = strncmp(to, "https://", 8) == 0 ? 8 : strncmp(to, "http://", 7) == 0 ? 7 : 0;
	const char *auth = to + skip, *path;
	char host[HOST_TEXT_MAX];
	uint16_t port;

	if (skip == 0 || strlen(to) > 1024)
		return 0;
	path = auth + strcspn(auth, "/");
	if (cfg_parse_hostport(auth, (size_t)(path - auth), host, &port, 80) < 0)
		return 0;
	for (; *path != '\0'; path++)
		if (*path <= 0x20 || *path >= 0x7f || strchr("\"<>\\^`{|}#?", *path) != NULL)
			return 0;
	return 1;
}

/* 1 when host patterns a and b (lower case, valid) can name one host. */
static int cfg_patterns_overlap(const char *a, const char *b)
{
	if (a[0] != '*' || b[0] != '*')
		return hostpat_match(a, b) || hostpat_match(b, a) || strcmp(a, b) == 0;
	return strcmp(a, b) == 0 || hostpat_match(a, b + 2) || hostpat_match(b, a + 2);
}

/*
 * A wildcard redirect must not cover a name an agent may serve: which one
 * answered would then depend on whether the agent is connected, and a
 * browser keeps a 301 for good.  Exact redirects always win (docs/access.md).
 * 1 (and reported at n) when host does.
 */
static int edge_redirect_overlaps(struct cfgp *p, const yaml_node_t *n,
                                  const struct edge_config *cfg, const char *host)
{
	if (host[0] != '*')
		return 0;
	for (size_t i = 0; i < cfg->nagents; i++)
		for (size_t j = 0; j < cfg->agents[i].nhosts; j++)
			if (cfg_patterns_overlap(host, cfg->agents[i].hosts[j])) {
				cfg_err(p, n,
				        "redirect '%s' covers names agent '%s' may serve ('%s'): "
				        "a wildcard redirect would answer for them while the agent "
				        "is away; name the redirected hosts exactly",
				        host, cfg->agents[i].name, cfg->agents[i].hosts[j]);
				return 1;
			}
	return 0;
}

/* redirects: hosts the edge answers with a redirect to another URL. */
static void edge_redirects(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *seq = cfg_entries(p, top, E_REDIRECTS);
	struct cfg_seen hosts;
	size_t n;

	if (seq == NULL)
		return;
	n = cfg_seq_len(seq);
	cfg->redirects = cfg_calloc(p, n, sizeof(struct edge_redirect));
	cfg_seen_init(p, &hosts, n);
	for (size_t i = 0; cfg->redirects && i < n && !p->oom; i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);
		struct edge_redirect *r = &cfg->redirects[i];
		char where[64];
		const char *s;
		struct cfg_map m;
		uint32_t code = 301;

		cfg->nredirects = i + 1;
		r->code = 301;
		r->keep_path = 1;
		if (item->type != YAML_MAPPING_NODE) {
			cfg_err(p, item, "'redirects' must be a list of mappings");
			continue;
		}
		snprintf(where, sizeof(where), "in redirect #%zu", i + 1);
		cfg_map_read(p, item, where, redirect_keys, &m);
		if (cfg_required(p, &m, RD_HOST, where) == 0 && cfg_str(p, &m, RD_HOST, &s) == 1) {
			size_t first;

			r->host = cfg_strdup(p, s);
			if (r->host == NULL)
				continue;
			host_normalize(r->host);
			if (!hostpat_valid(r->host)) {
				cfg_err(p, m.val[RD_HOST], "bad host pattern '%s'", cfg_quote(s).s);
			} else if (cfg->tunnel.hostname != NULL &&
			           strcmp(r->host, cfg->tunnel.hostname) == 0) {
				cfg_err(p, m.val[RD_HOST],
				        "'%s' is tunnel.hostname, the edge's own name",
				        cfg_quote(s).s);
			} else if (edge_redirect_overlaps(p, m.val[RD_HOST], cfg, r->host)) {
				/* reported */
			} else {
				first = cfg_seen_add(&hosts, r->host, strlen(r->host), i,
				                     m.val[RD_HOST]);
				if (first != i)
					cfg_err(p, m.val[RD_HOST],
					        "duplicate redirect '%s' (first at %s)",
					        cfg_quote(s).s, cfg_pos(hosts.at[first]).s);
			}
		}
		if (cfg_required(p, &m, RD_TO, where) == 0 && cfg_str(p, &m, RD_TO, &s) == 1) {
			if (!cfg_redirect_to_valid(s))
				cfg_err(p, m.val[RD_TO],
				        "bad redirect target '%s' (expected "
				        "http(s)://HOST[:PORT][/PATH], "
				        "no query, fragment, spaces or quotes)",
				        cfg_quote(s).s);
			else
				r->to = cfg_strdup(p, s);
		}
		if (cfg_has(&m, RD_CODE) && cfg_str(p, &m, RD_CODE, &s) == 1) {
			if (strcmp(s, "301") != 0 && strcmp(s, "302") != 0 &&
			    strcmp(s, "307") != 0 && strcmp(s, "308") != 0)
				cfg_err(p, m.val[RD_CODE],
				        "bad redirect code '%s' (expected 301, 302, 307 or 308)",
				        cfg_quote(s).s);
			else
				code = (uint32_t)atoi(s);
		}
		r->code = (int)code;
		cfg_get_bool(p, &m, RD_KEEP_PATH, &r->keep_path);
	}
	cfg_seen_free(&hosts);
}

/* The contents of the file at key k: a regular file of at most max bytes. */
static void cfg_get_contents(struct cfgp *p, const struct cfg_map *m, int k, size_t max, char **out,
                             size_t *len)
{
	struct stat st;
	const char *s;
	ssize_t n;
	int fd;

	if (cfg_str(p, m, k, &s) != 1)
		return;
	fd = open(s, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		cfg_err(p, m->key[k], "cannot read '%s': %s", cfg_quote(s).s, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		cfg_err(p, m->key[k], "cannot read '%s': %s", cfg_quote(s).s,
		        S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
	} else if (st.st_size > (off_t)max) {
		cfg_err(p, m->key[k], "'%s' is larger than %zu bytes", cfg_quote(s).s, (size_t)max);
	} else if ((*out = cfg_calloc(p, 1, (size_t)st.st_size + 1)) != NULL) {
		n = read(fd, *out, (size_t)st.st_size);
		if (n < 0)
			cfg_err(p, m->key[k], "cannot read '%s': %s", cfg_quote(s).s,
			        strerror(errno));
		*len = n > 0 ? (size_t)n : 0;
	}
	if (fd >= 0)
		close(fd);
}

/* unknown_hosts: what requests for a host no route serves get. */
static void edge_unknown_hosts(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	yaml_node_t *n = cfg_submap(p, top, E_UNKNOWN);
	const char *s;
	struct cfg_map m;

	if (n == NULL)
		return;
	cfg_map_read(p, n, "in unknown_hosts", unknown_keys, &m);
	if (cfg_str(p, &m, UH_ANSWER, &s) == 1) {
		if (strcmp(s, "not_found") == 0)
			cfg->unknown.answer = UNKNOWN_NOT_FOUND;
		else if (strcmp(s, "close") == 0)
			cfg->unknown.answer = UNKNOWN_CLOSE;
		else if (strcmp(s, "redirect") == 0)
			cfg->unknown.answer = UNKNOWN_REDIRECT;
		else
			cfg_err(p, m.val[UH_ANSWER],
			        "bad answer '%s' (expected not_found, close or redirect)",
			        cfg_quote(s).s);
	}
	cfg_get_contents(p, &m, UH_PAGE, CFG_PAGE_MAX, &cfg->unknown.page, &cfg->unknown.page_len);
	if (cfg_str(p, &m, UH_TO, &s) == 1) {
		if (!cfg_redirect_to_valid(s))
			cfg_err(
			    p, m.val[UH_TO],
			    "bad redirect target '%s' (expected http(s)://HOST[:PORT][/PATH], no "
			    "query, fragment, spaces or quotes)",
			    cfg_quote(s).s);
		else
			cfg->unknown.to = cfg_strdup(p, s);
	}
	if (cfg->unknown.answer == UNKNOWN_REDIRECT && !cfg_has(&m, UH_TO))
		cfg_err(p, n, "unknown_hosts: 'answer: redirect' needs 'to'");
	if (cfg_has(&m, UH_TO) && cfg->unknown.answer != UNKNOWN_REDIRECT)
		cfg_err(p, m.key[UH_TO], "unknown_hosts: 'to' is only for 'answer: redirect'");
	if (cfg_has(&m, UH_PAGE) && cfg->unknown.answer != UNKNOWN_NOT_FOUND)
		cfg_err(p, m.key[UH_PAGE], "unknown_hosts: 'page' is only for 'answer: not_found'");
}

/* access_log: "-" (stderr) or a file whose directory exists (the file is
 * created at start, and again after logrotate: -t must not create it). */
static void edge_access_log(struct cfgp *p, const struct cfg_map *top, struct edge_config *cfg)
{
	const char *s, *slash;
	char dir[4096];
	struct stat st;

	cfg_get_strdup(p, top, E_ACCESS_LOG, &cfg->access_log);
	if (!cfg->access_log || strcmp(cfg->access_log, "-") == 0)
		return;
	s = cfg->access_log;
	slash = strrchr(s, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == s ? 1 : (int)(slash - s), s);
	if (!s[0] || (slash && !slash[1]))
		cfg_err(p, top->val[E_ACCESS_LOG], "access_log '%s' is not a file name",
		        cfg_quote(s).s);
	else if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		cfg_err(p, top->val[E_ACCESS_LOG], "access_log '%s': no directory '%s'",
		        cfg_quote(s).s, cfg_quote(dir).s);
}

/* Two listeners on one port of the same (or a wildcard) address cannot both bind. */
static void edge_conflicts(struct cfgp *p, struct edge_config *cfg)
{
	static const char *const names[] = {
	    [EL_HTTP] = "listen.http",
	    [EL_HTTPS] = "listen.https",
	    [EL_ADMIN] = "admin.listen",
	    [EL_TUNNEL] = "tunnel.listen",
	};
	const struct addr *a[] = {
	    [EL_HTTP] = cfg->has_http ? &cfg->http : NULL,
	    [EL_HTTPS] = cfg->has_https ? &cfg->https : NULL,
	    [EL_ADMIN] = cfg->has_admin ? &cfg->admin : NULL,
	    [EL_TUNNEL] = cfg->tunnel.listen.len != 0 ? &cfg->tunnel.listen : NULL,
	};

	for (size_t i = 1; i < sizeof(a) / sizeof(a[0]); i++)
		for (size_t j = 0; j < i; j++) {
			int same;

			/* The same port on the same address, or on a wildcard
			 * address, which takes every address ("[::]" IPv4 too). */
			if (a[i] == NULL || a[j] == NULL || addr_port(a[i]) != addr_port(a[j]))
				continue;
			same = addr_equal(a[i], a[j]);
			if (!same && !addr_is_any(a[i]) && !addr_is_any(a[j]))
				continue;
			size_t later = i, first = j;

			/* agents and HTTPS clients share a port, told apart by SNI */
			if (same && i == EL_TUNNEL && j == EL_HTTPS)
				continue;
			if (p->listen_at[j]->start_mark.index > p->listen_at[i]->start_mark.index) {
				later = j;
				first = i;
			}
			cfg_err(p, p->listen_at[later], "%s uses the same address as %s (%s)%s",
			        names[later], names[first], cfg_text(p->listen_at[later]),
			        same ? ""
			             : ": a wildcard address takes that port on every address");
		}
}

int config_edge_load(const char *file, struct edge_config *cfg)
{
	struct cfgp p = {.file = file};
	yaml_node_t *root;
	struct cfg_map top;

	memset(cfg, 0, sizeof(*cfg));
	cfg->file = cfg_strdup(&p, file);
	cfg->tunnel.path = cfg_strdup(&p, DEFAULT_TUNNEL);
	cfg->log_level = LOG_INFO;
	cfg->http_limits.header_timeout_ms = 60000;
	cfg->http_limits.idle_timeout_ms = 75000;
	cfg->http_limits.upstream_timeout_ms = 60000;
	cfg->http_limits.max_header_bytes = 16384;
	cfg->http_limits.max_body_bytes = 0;
	cfg->max_conns_per_client = CFG_MAX_PER_CLIENT_DEFAULT;
	addr_parse("0.0.0.0:1", &cfg->streams[0]);
	cfg->nstreams = 1;

	if (cfg_load_doc(&p) < 0)
		goto out;
	root = yaml_document_get_root_node(&p.doc);
	if (root != NULL && root->type != YAML_MAPPING_NODE) {
		cfg_err(&p, root, "the configuration must be a mapping of keys to values");
	} else {
		cfg_map_read(&p, root, "at top level", edge_keys, &top);
		edge_listen(&p, &top, cfg);
		edge_tunnel(&p, &top, cfg);
		edge_admin(&p, &top, cfg);
		edge_agents(&p, &top, cfg);
		edge_access(&p, &top, cfg);
		edge_redirects(&p, &top, cfg);
		edge_unknown_hosts(&p, &top, cfg);
		edge_access_log(&p, &top, cfg);
		cfg_get_log_level(&p, &top, E_LOG_LEVEL, &cfg->log_level);
		edge_http(&p, &top, cfg);
		edge_tls(&p, &top, cfg);
		edge_tls_check(&p, cfg);
		edge_conflicts(&p, cfg);
	}
	yaml_document_delete(&p.doc);
out:
	if (cfg_failed(&p))
		config_edge_free(cfg);
	return cfg_flush(&p);
}

void config_edge_free(struct edge_config *cfg)
{
	free(cfg->file);
	free(cfg->tunnel.hostname);
	free(cfg->tunnel.path);
	free(cfg->tunnel.cert);
	free(cfg->tunnel.key);
	for (size_t i = 0; i < cfg->nagents; i++) {
		for (size_t j = 0; j < cfg->agents[i].nhosts; j++)
			free(cfg->agents[i].hosts[j]);
		free(cfg->agents[i].hosts);
		free(cfg->agents[i].ports);
	}
	free(cfg->agents);
	for (size_t i = 0; i < cfg->naccess; i++) {
		for (size_t j = 0; j < cfg->access[i].nhosts; j++)
			free(cfg->access[i].hosts[j]);
		free(cfg->access[i].hosts);
		free(cfg->access[i].ports);
		free(cfg->access[i].allow);
		free(cfg->access[i].deny);
		for (size_t j = 0; j < cfg->access[i].nusers; j++) {
			free(cfg->access[i].users[j].name);
			free(cfg->access[i].users[j].hash);
		}
		free(cfg->access[i].users);
	}
	free(cfg->access);
	for (size_t i = 0; i < cfg->nredirects; i++) {
		free(cfg->redirects[i].host);
		free(cfg->redirects[i].to);
	}
	free(cfg->redirects);
	free(cfg->unknown.page);
	free(cfg->unknown.to);
	free(cfg->access_log);
	free(cfg->tls.cert_dir);
	free(cfg->tls.acme_directory);
	free(cfg->tls.acme_email);
	free(cfg->tls.acme_ca);
	memset(cfg, 0, sizeof(*cfg));
}

/* ---- agent.yaml ------------------------------------------------------------- */

enum {
	A_EDGE,
	A_KEY,
	A_EDGE_CA,
	A_NAME,
	A_LOG_LEVEL,
	A_CONNECT_TIMEOUT,
	A_MAX_CONNS,
	A_ROUTES,
	A_STREAMS
};
static const char *const agent_keys[] = {
    "edge",   "key",     "edge_ca", "name", "log_level", "connect_timeout", "max_connections",
    "routes", "streams", NULL};

enum { R_HOST, R_TO, R_TLS_VERIFY, R_TLS, R_PROXY, R_REDIRECT, R_HSTS };
static const char *const route_keys[] = {
    "host", "to", "tls_verify", "tls", "proxy_protocol", "redirect_https", "hsts", NULL};

enum { S_LISTEN, S_TO, S_PROXY, S_IDLE };
static const char *const stream_keys[] = {"listen", "to", "proxy_protocol", "idle_timeout", NULL};

/* "wss://host[:port][/path]" or "ws://..." into the edge_* fields. */
static int agent_parse_url(struct cfgp *p, const char *url, struct agent_config *cfg)
{
	const char *rest, *slash;
	uint16_t defport;

	if (strncmp(url, "wss://", 6) == 0) {
		cfg->edge_tls = 1;
		rest = url + 6;
		defport = 443;
	} else if (strncmp(url, "ws://", 5) == 0) {
		cfg->edge_tls = 0;
		rest = url + 5;
		defport = 80;
	} else {
		return -1;
	}
	slash = strchr(rest, '/');
	if (slash == NULL)
		slash = rest + strlen(rest);
	if (cfg_parse_hostport(rest, (size_t)(slash - rest), cfg->edge_host, &cfg->edge_port,
	                       defport) < 0)
		return -1;
	if (*slash == '\0')
		slash = "/";
	if (!cfg_path_valid(slash))
		return -1;
	cfg->edge_path = cfg_strdup(p, slash);
	return 0;
}

/*
 * "http://HOST[:PORT][/]", "https://HOST[:PORT][/]" or "HOST:PORT".
 * Paths are not supported: the request path is forwarded unchanged.
 */
static int agent_parse_target(const char *to, struct agent_route *r)
{
	const char *rest = to;
	size_t n;
	uint16_t defport = 0;

	if (strncmp(to, "http://", 7) == 0) {
		r->target = TARGET_HTTP;
		rest = to + 7;
		defport = 80;
	} else if (strncmp(to, "https://", 8) == 0) {
		r->target = TARGET_HTTPS;
		rest = to + 8;
		defport = 443;
	} else {
		r->target = TARGET_RAW;
	}
	n = strlen(rest);
	if (r->target != TARGET_RAW && n > 0 && rest[n - 1] == '/')
		n--;
	return cfg_parse_hostport(rest, n, r->to_host, &r->to_port, defport);
}

static void agent_route(struct cfgp *p, yaml_node_t *n, size_t idx, struct agent_config *cfg,
                        struct cfg_seen *hosts)
{
	struct agent_route *r = &cfg->routes[idx];
	const char *host = cfg_peek(p, n, "host"), *s;
	struct cfg_map m;
	char where[128];
	int to_ok = 0;

	if (host != NULL)
		snprintf(where, sizeof(where), "in route '%s'", cfg_quote(host).s);
	else
		snprintf(where, sizeof(where), "in route #%zu", idx + 1);
	cfg_map_read(p, n, where, route_keys, &m);
	r->tls_verify = 1;
	r->tls_mode = TLS_MODE_EDGE;
	r->proxy_protocol = PROXY_NONE;
	r->redirect_https = 1;

	if (cfg_required(p, &m, R_HOST, where) == 0 && cfg_str(p, &m, R_HOST, &s) == 1) {
		char h[PROTO_MAX_HOST + 1];
		size_t hlen = strlen(s);

		if (hlen < sizeof(h))
			memcpy(h, s, hlen + 1);
		else
			h[0] = '\0';
		host_normalize(h);
		if (!hostpat_valid(h)) {
			cfg_err(p, m.val[R_HOST], "bad host pattern '%s'", cfg_quote(s).s);
		} else {
			size_t first;

			memcpy(r->host, h, sizeof(r->host));
			first = cfg_seen_add(hosts, r->host, strlen(r->host), idx, m.val[R_HOST]);
			if (first != idx)
				cfg_err(p, m.val[R_HOST], "duplicate route '%s' (first at %s)", h,
				        cfg_pos(hosts->at[first]).s);
		}
	}
	if (cfg_required(p, &m, R_TO, where) == 0 && cfg_str(p, &m, R_TO, &s) == 1) {
		if (agent_parse_target(s, r) < 0)
			cfg_err(p, m.val[R_TO],
			        "bad target '%s' (expected http://HOST:PORT, https://HOST:PORT or "
			        "HOST:PORT)",
			        cfg_quote(s).s);
		else
			to_ok = 1;
	}
	cfg_get_bool(p, &m, R_TLS_VERIFY, &r->tls_verify);
	if (cfg_str(p, &m, R_TLS, &s) == 1) {
		if (strcmp(s, "edge") == 0)
			r->tls_mode = TLS_MODE_EDGE;
		else if (strcmp(s, "passthrough") == 0)
			r->tls_mode = TLS_MODE_PASSTHROUGH;
		else
			cfg_err(p, m.val[R_TLS], "bad tls mode '%s' (expected edge or passthrough)",
			        cfg_quote(s).s);
	}
	cfg_get_proxy(p, &m, R_PROXY, &r->proxy_protocol);
	cfg_get_bool(p, &m, R_REDIRECT, &r->redirect_https);
	if (cfg_has(&m, R_HSTS)) {
		int on = 0;
		const char *hv = NULL;

		if (cfg_str(p, &m, R_HSTS, &hv) == 1 && hv[0] &&
		    strspn(hv, "0123456789") == strlen(hv)) {
			if (strlen(hv) <= 9)
				r->hsts = (uint32_t)atol(hv);
			else
				cfg_err(p, m.val[R_HSTS],
				        "'hsts' must be true, false or a max-age in seconds below "
				        "1000000000, not '%s'",
				        cfg_quote(hv).s);
		} else if (hv) {
			cfg_get_bool(p, &m, R_HSTS, &on);
			r->hsts = on ? 31536000u : 0;
		}
	}
	if (to_ok && r->target == TARGET_RAW && r->tls_mode != TLS_MODE_PASSTHROUGH)
		cfg_err(p, m.val[R_TO], "raw target needs tls: passthrough");
	if (to_ok && r->target != TARGET_RAW && r->tls_mode == TLS_MODE_PASSTHROUGH)
		cfg_err(p, m.val[R_TLS], "tls: passthrough needs a raw HOST:PORT target");
}

/* One entry of streams:; listen_at[idx] is set to its listen node if that is valid. */
static void agent_stream(struct cfgp *p, yaml_node_t *n, size_t idx, struct agent_config *cfg,
                         yaml_node_t **listen_at)
{
	struct agent_stream *st = &cfg->streams[idx];
	const char *lt = cfg_peek(p, n, "listen"), *s;
	struct cfg_map m;
	char where[128];
	int listen_ok = 0, to_ok = 0;

	if (lt != NULL)
		snprintf(where, sizeof(where), "in stream '%s'", cfg_quote(lt).s);
	else
		snprintf(where, sizeof(where), "in stream #%zu", idx + 1);
	cfg_map_read(p, n, where, stream_keys, &m);

	if (cfg_required(p, &m, S_LISTEN, where) == 0 && cfg_str(p, &m, S_LISTEN, &s) == 1) {
		if (port_range_parse(s, &st->listen) < 0) {
			cfg_err(p, m.val[S_LISTEN], "bad stream listen '%s' " BAD_RANGE_HINT,
			        cfg_quote(s).s);
		} else {
			listen_at[idx] = m.val[S_LISTEN];
			listen_ok = 1;
		}
	}
	if (cfg_required(p, &m, S_TO, where) == 0 && cfg_str(p, &m, S_TO, &s) == 1) {
		if (cfg_parse_hostport(s, strlen(s), st->to_host, &st->to_port, 0) < 0)
			cfg_err(p, m.val[S_TO], "bad target '%s' (expected HOST:PORT)",
			        cfg_quote(s).s);
		else
			to_ok = 1;
	}
	if (listen_ok && to_ok &&
	    (uint32_t)st->to_port + (uint32_t)(st->listen.hi - st->listen.lo) > 65535)
		cfg_err(p, m.val[S_TO], "target port range %u-%u exceeds 65535",
		        (unsigned)st->to_port,
		        (unsigned)st->to_port + (unsigned)(st->listen.hi - st->listen.lo));
	cfg_get_proxy(p, &m, S_PROXY, &st->proxy_protocol);
	/* PROXY v1 has no UDP form (proxy-protocol.txt section 2.1) */
	if (listen_ok && st->listen.kind == ROUTE_KIND_UDP && st->proxy_protocol == PROXY_V1)
		cfg_err(p, m.val[S_PROXY], "proxy_protocol v1 cannot carry UDP; use v2");
	cfg_get_duration(p, &m, S_IDLE, &st->idle_timeout_ms);
	/* The edge forgets a flow idle a little longer than this on its own. */
	if (listen_ok && st->listen.kind == ROUTE_KIND_UDP &&
	    st->idle_timeout_ms > CFG_UDP_IDLE_MAX_MS)
		cfg_err(p, m.val[S_IDLE], "idle_timeout of a UDP stream is at most 10m");
}

static void agent_routes(struct cfgp *p, const struct cfg_map *top, struct agent_config *cfg)
{
	yaml_node_t *seq = cfg_list(p, top, A_ROUTES, "mappings");
	struct cfg_seen hosts;
	size_t n;

	if (seq == NULL)
		return;
	n = cfg_seq_len(seq);
	cfg->routes = cfg_calloc(p, n, sizeof(struct agent_route));
	cfg_seen_init(p, &hosts, n);
	for (size_t i = 0; i < n && !p->oom; i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);

		cfg->nroutes = i + 1;
		if (item->type != YAML_MAPPING_NODE)
			cfg_err(p, item, "'routes' must be a list of mappings");
		else
			agent_route(p, item, i, cfg, &hosts);
	}
	cfg_seen_free(&hosts);
}

/*
 * Streams of one protocol may not share a port.  Comparing each listen range
 * with all before it took seconds for the 34,000 streams a 1 MiB file holds,
 * so once all are parsed their ends cut the ports (UDP keyed above TCP) into
 * spans, and a segment tree over the spans finds each overlap in O(log n).
 * The ranges go in in file order, so the first stream to reach a node is the
 * lowest that ever will.  Errors are printed sorted by position, so checking
 * after the parse prints what checking each entry as it came did.
 */
struct stream_node {
	uint32_t all; /* 1 + the first stream holding every span under the node, 0: none */
	uint32_t any; /* 1 + the first stream holding some span under the node, 0: none */
};

/* A port of range r's protocol as one key: TCP 0..65535, UDP from 65536. */
static uint32_t stream_key(const struct port_range *r, uint32_t port)
{
	return (r->kind == ROUTE_KIND_UDP ? 65536u : 0u) + port;
}

static int stream_key_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Index of key k in the sorted keys[0..n), where it is. */
static uint32_t stream_cut(const uint32_t *keys, size_t n, uint32_t k)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (keys[mid] < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint32_t)lo;
}

/* The lower of two "1 + index" values, 0 standing for none. */
static uint32_t stream_first(uint32_t a, uint32_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}

/*
 * Mark spans [lo, hi] as held by v (1 + a stream index, larger than every
 * earlier one) under node k of t, which covers spans [klo, khi]; returns the
 * lowest earlier v holding one of the spans [lo, hi], or 0.  Visits at most
 * four nodes a level.
 */
static uint32_t stream_walk(struct stream_node *t, size_t k, uint32_t klo, uint32_t khi,
                            uint32_t lo, uint32_t hi, uint32_t v)
{
	uint32_t mid = klo + (khi - klo) / 2, first;

	if (hi < klo || khi < lo)
		return 0;
	if (lo <= klo && khi <= hi) {
		first = t[k].any;
		if (t[k].all == 0)
			t[k].all = v;
		if (t[k].any == 0)
			t[k].any = v;
		return first;
	}
	/* a stream holding every span under k holds one of [lo, hi] too */
	first = t[k].all;
	if (t[k].any == 0)
		t[k].any = v;
	first = stream_first(first, stream_walk(t, 2 * k, klo, mid, lo, hi, v));
	return stream_first(first, stream_walk(t, 2 * k + 1, mid + 1, khi, lo, hi, v));
}

/*
 * Report each stream that shares a port with an earlier one, at its listen
 * node, naming the first such earlier stream in the file.  listen_at[i] is
 * the listen node of stream i, NULL when it has no valid range.
 */
static void agent_stream_overlaps(struct cfgp *p, const struct agent_config *cfg,
                                  yaml_node_t *const *listen_at)
{
	size_t n = cfg->nstreams, nkeys = 0;
	uint32_t *keys = cfg_calloc(p, 2 * n, sizeof(*keys));
	struct stream_node *t = NULL;

	if (keys == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct port_range *r = &cfg->streams[i].listen;

		if (listen_at[i] == NULL)
			continue;
		keys[nkeys++] = stream_key(r, r->lo);
		keys[nkeys++] = stream_key(r, r->hi) + 1;
	}
	if (nkeys == 0)
		goto out;
	qsort(keys, nkeys, sizeof(*keys), stream_key_cmp);
	n = nkeys;
	nkeys = 1;
	for (size_t i = 1; i < n; i++)
		if (keys[i] != keys[nkeys - 1])
			keys[nkeys++] = keys[i];
	/* span j is the ports [keys[j], keys[j + 1]); there are nkeys - 1 >= 1 */
	t = cfg_calloc(p, 4 * nkeys, sizeof(*t));
	if (t == NULL)
		goto out;
	for (size_t i = 0; i < cfg->nstreams; i++) {
		const struct port_range *r = &cfg->streams[i].listen;
		uint32_t lo, hi, first;

		if (listen_at[i] == NULL)
			continue;
		lo = stream_cut(keys, nkeys, stream_key(r, r->lo));
		hi = stream_cut(keys, nkeys, stream_key(r, r->hi) + 1) - 1;
		/* i < CFG_NODES_MAX: i + 1 fits */
		first = stream_walk(t, 1, 0, (uint32_t)nkeys - 2, lo, hi, (uint32_t)i + 1);
		if (first != 0)
			cfg_err(p, listen_at[i], "duplicate route '%s' (first at %s)",
			        cfg_quote(cfg_text(listen_at[i])).s,
			        cfg_pos(listen_at[first - 1]).s);
	}
out:
	free(t);
	free(keys);
}

static void agent_streams(struct cfgp *p, const struct cfg_map *top, struct agent_config *cfg)
{
	yaml_node_t *seq = cfg_list(p, top, A_STREAMS, "mappings");
	yaml_node_t **listen_at;
	size_t n;

	if (seq == NULL)
		return;
	n = cfg_seq_len(seq);
	cfg->streams = cfg_calloc(p, n, sizeof(struct agent_stream));
	listen_at = cfg_calloc(p, n, sizeof(*listen_at));
	for (size_t i = 0; i < n && !p->oom; i++) {
		yaml_node_t *item = cfg_seq_item(p, seq, i);

		cfg->nstreams = i + 1;
		if (item->type != YAML_MAPPING_NODE)
			cfg_err(p, item, "'streams' must be a list of mappings");
		else
			agent_stream(p, item, i, cfg, listen_at);
	}
	if (!p->oom)
		agent_stream_overlaps(p, cfg, listen_at);
	free(listen_at);
}

/* key: the agent's private key file, loaded (then wiped) so that -t and a
 * reload report a missing, open or malformed key at its place. */
static void agent_key(struct cfgp *p, const struct cfg_map *top, struct agent_config *cfg)
{
	uint8_t secret[KEY_SECRET_LEN], pub[KEY_PUB_LEN];
	char err[512];

	cfg_get_strdup(p, top, A_KEY, &cfg->key);
	if (!cfg->key)
		return;
	if (keys_load_private(cfg->key, secret, pub, err, sizeof(err)) < 0)
		cfg_err(p, top->val[A_KEY], "%s", err);
	sodium_memzero(secret, sizeof(secret));
}

static void agent_top(struct cfgp *p, const struct cfg_map *top, struct agent_config *cfg)
{
	const char *s;

	if (cfg_required(p, top, A_EDGE, "at top level") == 0 && cfg_str(p, top, A_EDGE, &s) == 1) {
		if (agent_parse_url(p, s, cfg) < 0)
			cfg_err(p, top->val[A_EDGE],
			        "bad edge URL '%s' (expected wss://HOST[:PORT]/PATH)",
			        cfg_quote(s).s);
		else
			cfg->edge = cfg_strdup(p, s);
	}
	if (cfg_required(p, top, A_KEY, "at top level") == 0)
		agent_key(p, top, cfg);
	cfg_get_readable(p, top, A_EDGE_CA, &cfg->edge_ca, CFG_FILE_CA);
	if (cfg_str(p, top, A_NAME, &s) == 1) {
		if (!cfg_name_valid(s))
			cfg_err(p, top->val[A_NAME], "bad name '%s' " BAD_NAME_HINT,
			        cfg_quote(s).s);
		else
			snprintf(cfg->name, sizeof(cfg->name), "%s", s);
	}
	cfg_get_log_level(p, top, A_LOG_LEVEL, &cfg->log_level);
	cfg_get_duration(p, top, A_CONNECT_TIMEOUT, &cfg->connect_timeout_ms);
	cfg_get_count(p, top, A_MAX_CONNS, CFG_MAX_CONNS_MAX, "no limit", &cfg->max_conns);
	agent_routes(p, top, cfg);
	agent_streams(p, top, cfg);
}

int config_agent_load(const char *file, struct agent_config *cfg)
{
	struct cfgp p = {.file = file};
	yaml_node_t *root;
	struct cfg_map top;

	memset(cfg, 0, sizeof(*cfg));
	cfg->file = cfg_strdup(&p, file);
	cfg->log_level = LOG_INFO;
	cfg->connect_timeout_ms = 5000;
	cfg->max_conns = CFG_MAX_CONNS_DEFAULT;

	if (cfg_load_doc(&p) < 0)
		goto out;
	root = yaml_document_get_root_node(&p.doc);
	if (root != NULL && root->type != YAML_MAPPING_NODE) {
		cfg_err(&p, root, "the configuration must be a mapping of keys to values");
	} else {
		cfg_map_read(&p, root, "at top level", agent_keys, &top);
		agent_top(&p, &top, cfg);
	}
	yaml_document_delete(&p.doc);
out:
	if (cfg_failed(&p))
		config_agent_free(cfg);
	return cfg_flush(&p);
}

void config_agent_free(struct agent_config *cfg)
{
	free(cfg->file);
	free(cfg->edge);
	free(cfg->edge_path);
	free(cfg->key);
	free(cfg->edge_ca);
	free(cfg->routes);
	free(cfg->streams);
	memset(cfg, 0, sizeof(*cfg));
}
