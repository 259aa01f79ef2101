/*
 * edge/clienthello.c - TLS ClientHello parser (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
 *
 * Two steps: walk the TLS records (RFC 8446 §5.1) until they hold the whole
 * handshake message, checking each record header as soon as its bytes are
 * there; then parse the message body, every length checked against what
 * remains of its enclosing vector.  Anything a conforming client would not
 * send is an error rather than something to guess around: the bytes go on to
 * a real TLS stack afterwards, and routing must not depend on a reading that
 * stack could disagree with.
 */
#include "edge/clienthello.h"

#include <string.h>

#include "common/hostpat.h"

#define REC_HEADER      5
#define REC_HANDSHAKE   22
#define REC_MAX         16384 /* RFC 8446 §5.1: TLSPlaintext.length <= 2^14 */
#define HS_HEADER       4
#define HS_CLIENTHELLO  1
#define EXT_SERVER_NAME 0  /* RFC 6066 §3 */
#define EXT_ALPN        16 /* RFC 7301 §3.1 */
#define SNI_HOST_NAME   0
#define HOST_MAX        253

/* Smallest body: version, random, three empty-ish vectors (RFC 8446 §4.1.2). */
#define CH_MIN_BODY (2 + 32 + 1 + 2 + 2 + 1 + 1)

static const char ERR_NOT_TLS[] = "not TLS";
static const char ERR_NOT_CH[] = "not a ClientHello";
static const char ERR_MALFORMED[] = "malformed ClientHello";
static const char ERR_TOO_LARGE[] = "ClientHello too large";
static const char ERR_SNI[] = "bad server name";

/* A bounded reader over the reassembled message body. */
struct rd {
	const uint8_t *p, *end;
};

static size_t rd_left(const struct rd *r)
{
	return (size_t)(r->end - r->p);
}

static int rd_u8(struct rd *r, unsigned *v)
{
	if (rd_left(r) < 1)
		return -1;
	*v = r->p[0];
	r->p += 1;
	return 0;
}

static int rd_u16(struct rd *r, unsigned *v)
{
	if (rd_left(r) < 2)
		return -1;
	*v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	return 0;
}

static int rd_skip(struct rd *r, size_t n)
{
	if (rd_left(r) < n)
		return -1;
	r->p += n;
	return 0;
}

/* Split off the next n bytes of r into sub (a nested vector). */
static int rd_sub(struct rd *r, size_t n, struct rd *sub)
{
	if (rd_left(r) < n)
		return -1;
	sub->p = r->p;
	sub->end = r->p + n;
	r->p += n;
	return 0;
}

/*
 * RFC 6066 §3: ServerNameList <1..2^16-1> of {name_type, HostName <1..2^16-1>}.
 * At most one host_name (as OpenSSL enforces); other name types are skipped.
 * The name must be an ASCII host name: IDNs travel in A-label form.
 */
static const char *parse_server_name(struct rd *ext, struct clienthello *ch)
{
	struct rd list;
	unsigned n, type;
	int seen = 0;

	if (rd_u16(ext, &n) < 0 || n == 0 || rd_sub(ext, n, &list) < 0 || rd_left(ext) != 0)
		return ERR_MALFORMED;
	while (rd_left(&list) > 0) {
		struct rd name;
		size_t len, i;

		if (rd_u8(&list, &type) < 0 || rd_u16(&list, &n) < 0 || rd_sub(&list, n, &name) < 0)
			return ERR_MALFORMED;
		if (type != SNI_HOST_NAME)
			continue;
		if (seen++)
			return ERR_SNI;
		len = n;
		if (len > 0 && name.p[len - 1] == '.')
			len--; /* a fully qualified name with its root label */
		if (len == 0 || len > HOST_MAX)
			return ERR_SNI;
		for (i = 0; i < len; i++) {
			unsigned char c = name.p[i];

			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c - 'A' + 'a');
			else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
			           c == '-'))
				return ERR_SNI;
			ch->sni[i] = (char)c;
		}
		ch->sni[len] = '\0';
		if (!host_valid(ch->sni)) {
			ch->sni[0] = '\0';
			return ERR_SNI;
		}
	}
	return NULL;
}

/* RFC 7301 §3.1: ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>. */
static const char *parse_alpn(struct rd *ext, struct clienthello *ch)
{
	struct rd list;
	unsigned n;

	if (rd_u16(ext, &n) < 0 || n < 2 || rd_sub(ext, n, &list) < 0 || rd_left(ext) != 0)
		return ERR_MALFORMED;
	ch->has_alpn = 1;
	while (rd_left(&list) > 0) {
		const uint8_t *name = NULL;

		if (rd_u8(&list, &n) < 0 || n == 0)
			return ERR_MALFORMED;
		name = list.p;
		if (rd_skip(&list, n) < 0)
			return ERR_MALFORMED;
		if (n == 2 && memcmp(name, "h2", 2) == 0)
			ch->has_alpn_h2 = 1;
		else if (n == 8 && memcmp(name, "http/1.1", 8) == 0)
			ch->has_alpn_http11 = 1;
	}
	return NULL;
}

/* RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2: the ClientHello body (after its 4-byte header). */
static const char *parse_body(const uint8_t *body, size_t len, struct clienthello *ch)
{
	struct rd r = {body, body + len}, exts;
	uint64_t seen[65536 / 64]; /* extension types met so far: each at most once (§4.2) */
	unsigned v, n;
	const char *err;

	if (rd_u16(&r, &v) < 0)
		return ERR_MALFORMED;
	ch->legacy_version = (uint16_t)v;
	if (rd_skip(&r, 32) < 0) /* random */
		return ERR_MALFORMED;
	if (rd_u8(&r, &n) < 0 || n > 32 || rd_skip(&r, n) < 0) /* legacy_session_id <0..32> */
		return ERR_MALFORMED;
	/* cipher_suites <2..2^16-2>, two bytes each */
	if (rd_u16(&r, &n) < 0 || n < 2 || (n & 1) || rd_skip(&r, n) < 0)
		return ERR_MALFORMED;
	/* legacy_compression_methods <1..2^8-1> */
	if (rd_u8(&r, &n) < 0 || n < 1 || rd_skip(&r, n) < 0)
		return ERR_MALFORMED;
	if (rd_left(&r) == 0)
		return NULL; /* TLS 1.2 allows a hello without extensions */
	if (rd_u16(&r, &n) < 0 || rd_sub(&r, n, &exts) < 0 || rd_left(&r) != 0)
		return ERR_MALFORMED;

	memset(seen, 0, sizeof(seen));
	while (rd_left(&exts) > 0) {
		struct rd ext;
		unsigned type;

		if (rd_u16(&exts, &type) < 0 || rd_u16(&exts, &n) < 0 || rd_sub(&exts, n, &ext) < 0)
			return ERR_MALFORMED;
		if (seen[type / 64] & (UINT64_C(1) << (type % 64)))
			return ERR_MALFORMED;
		seen[type / 64] |= UINT64_C(1) << (type % 64);
		err = NULL;
		if (type == EXT_SERVER_NAME)
			err = parse_server_name(&ext, ch);
		else if (type == EXT_ALPN)
			err = parse_alpn(&ext, ch);
		if (err)
			return err;
	}
	return NULL;
}

/* The first bytes of a record header, checked as far as they are there. */
static const char *check_record_prefix(const uint8_t *p, size_t avail, int first)
{
	const char *bad = first ? ERR_NOT_TLS : ERR_MALFORMED;

	/* A handshake record, major version 3 (SSL 3.0 .. TLS 1.3 all use 3.x on
	 * the record layer).  An SSLv2 hello starts with a byte >= 0x80. */
	if (avail >= 1 && p[0] != REC_HANDSHAKE)
		return bad;
	if (avail >= 2 && p[1] != 3)
		return bad;
	if (avail >= 3 && p[2] > 4)
		return bad;
	return NULL;
}

int clienthello_parse(const uint8_t *buf, size_t len, struct clienthello *ch, const char **err)
{
	uint8_t hs[HS_HEADER];
	size_t nhs = 0;   /* handshake header bytes collected */
	size_t total = 0; /* handshake message bytes incl. header, once known */
	size_t got = 0;   /* handshake bytes in complete records */
	size_t pos = 0, nrec = 0;
	const char *e;

	memset(ch, 0, sizeof(*ch));
	for (;;) {
		size_t avail = len - pos, rlen, fav, i;
		const uint8_t *frag;

		e = check_record_prefix(buf + pos, avail, pos == 0);
		if (e)
			goto fail;
		if (pos + REC_HEADER > CH_MAX_BYTES) {
			e = ERR_TOO_LARGE;
			goto fail;
		}
		if (avail < REC_HEADER)
			return CH_INCOMPLETE;
		rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		/* §5.1: no zero-length handshake fragments, none above 2^14 */
		if (rlen == 0 || rlen > REC_MAX) {
			e = ERR_MALFORMED;
			goto fail;
		}
		if (pos + REC_HEADER + rlen > CH_MAX_BYTES) {
			e = ERR_TOO_LARGE;
			goto fail;
		}
		if (pos == 0)
			ch->record_version = (uint16_t)(buf[1] << 8 | buf[2]);
		frag = buf + pos + REC_HEADER;
		fav = avail - REC_HEADER < rlen ? avail - REC_HEADER : rlen;
		for (i = 0; i < fav && nhs < HS_HEADER; i++)
			hs[nhs++] = frag[i];
		if (nhs >= 1 && hs[0] != HS_CLIENTHELLO) {
			e = ERR_NOT_CH;
			goto fail;
		}
		if (nhs == HS_HEADER && total == 0) {
			size_t mlen = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];

			total = HS_HEADER + mlen;
			if (mlen < CH_MIN_BODY) {
				e = ERR_MALFORMED;
				goto fail;
			}
			/* the rest needs at least this record: fail now on a
			 * length that cannot fit, however it is fragmented */
			if (pos + REC_HEADER + (total - got) > CH_MAX_BYTES) {
				e = ERR_TOO_LARGE;
				goto fail;
			}
		}
		if (fav < rlen)
			return CH_INCOMPLETE;
		got += rlen;
		pos += REC_HEADER + rlen;
		nrec++;
		if (total != 0 && got >= total)
			break;
	}
	/* §5.1: a ClientHello must end on a record boundary (a key change may follow). */
	if (got != total) {
		e = ERR_MALFORMED;
		goto fail;
	}

	if (nrec == 1) {
		e = parse_body(buf + REC_HEADER + HS_HEADER, total - HS_HEADER, ch);
	} else {
		/* Reassemble the fragments (RFC 8446 §5.1: a message may span records). */
		uint8_t msg[CH_MAX_BYTES];
		size_t off = 0, p = 0;

		while (p < pos) {
			size_t rl = (size_t)buf[p + 3] << 8 | buf[p + 4];

			memcpy(msg + off, buf + p + REC_HEADER, rl);
			off += rl;
			p += REC_HEADER + rl;
		}
		e = parse_body(msg + HS_HEADER, total - HS_HEADER, ch);
	}
	if (e)
		goto fail;
	return (int)pos;

fail:
	memset(ch, 0, sizeof(*ch));
	*err = e;
	return CH_ERROR;
}
