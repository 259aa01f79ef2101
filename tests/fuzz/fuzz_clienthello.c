/*
 * tests/fuzz/fuzz_clienthello.c - libFuzzer target for edge/clienthello.c.
 *
 * Checks the contract rather than just the absence of crashes: results stay
 * within bounds, errors carry one of the documented reasons, a prefix of the
 * input never parses to something else, a complete hello cut by one byte is
 * incomplete, and a hello re-split over two records gives the same result.
 */
#include "edge/clienthello.h"
#include "common/hostpat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t split[CH_MAX_BYTES + 16];

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_clienthello: invariant failed: %s\n", what);
		abort();
	}
}

static int known_error(const char *err)
{
	static const char *const errs[] = {"not TLS", "not a ClientHello", "malformed ClientHello",
	                                   "ClientHello too large", "bad server name"};

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (err && strcmp(err, errs[i]) == 0)
			return 1;
	return 0;
}

static int same(const struct clienthello *a, const struct clienthello *b)
{
	return strcmp(a->sni, b->sni) == 0 && a->has_alpn == b->has_alpn &&
	       a->has_alpn_h2 == b->has_alpn_h2 && a->has_alpn_http11 == b->has_alpn_http11 &&
	       a->legacy_version == b->legacy_version;
}

static int parse(const uint8_t *data, size_t size, struct clienthello *ch)
{
	const char *err = NULL;
	int r = clienthello_parse(data, size, ch, &err);

	check(r >= CH_ERROR, "return range");
	if (r == CH_ERROR) {
		check(known_error(err), "error reason");
		check(ch->sni[0] == '\0', "sni cleared on error");
	} else if (r == CH_INCOMPLETE) {
		check(size < CH_MAX_BYTES, "incomplete beyond CH_MAX_BYTES");
	} else {
		check((size_t)r <= size && r <= CH_MAX_BYTES, "length range");
	}
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct clienthello ch, ch2;
	size_t n, cut;
	int r, r2;

	r = parse(data, size, &ch);
	/* a prefix is incomplete, the same error proven early, or the same hello */
	for (int k = 0; k < 3; k++) {
		size_t p = k == 0 ? size / 2 : k == 1 ? size - (size > 0) : size / 3;

		r2 = parse(data, p, &ch2);
		check(r2 == CH_INCOMPLETE || r2 == r, "prefix disagrees");
		if (r2 > 0)
			check(same(&ch, &ch2), "prefix hello differs");
	}
	if (r <= 0)
		return 0;

	n = strlen(ch.sni);
	check(n < sizeof(ch.sni), "sni length");
	check(n == 0 || host_valid(ch.sni), "sni is a valid host name");
	check(parse(data, (size_t)r, &ch2) == r && same(&ch, &ch2), "exact length");
	check(parse(data, (size_t)r - 1, &ch2) == CH_INCOMPLETE, "one byte short");

	/* one record: re-split its handshake bytes into two records */
	n = (size_t)data[3] << 8 | data[4];
	if ((size_t)r == 5 + n && n >= 2 && (size_t)r + 5 <= CH_MAX_BYTES) {
		cut = 1 + (data[r - 1] % (n - 1));
		memcpy(split, data, 5 + cut);
		split[3] = (uint8_t)(cut >> 8);
		split[4] = (uint8_t)cut;
		memcpy(split + 5 + cut, data, 3);
		split[5 + cut + 3] = (uint8_t)((n - cut) >> 8);
		split[5 + cut + 4] = (uint8_t)(n - cut);
		memcpy(split + 10 + cut, data + 5 + cut, n - cut);
		r2 = parse(split, (size_t)r + 5, &ch2);
		check(r2 == r + 5, "re-split hello parses");
		check(same(&ch, &ch2), "re-split hello differs");
		check(parse(split, (size_t)r + 4, &ch2) == CH_INCOMPLETE, "re-split one short");
	}
	return 0;
}
