/* tests/unit/common/wsframe.c - WebSocket frame headers and masking. */
#include <stdint.h>
#include <stdlib.h>

#include "../../../common/wsframe.h"
#include "../unit.h"

static void test_round_trip_lengths(void)
{
	static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1u << 20, 1ull << 40};
	const uint8_t mask[4] = {1, 2, 3, 4};

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int m = 0; m < 2; m++) {
			uint8_t buf[WSF_MAX_HEADER];
			struct wsf_header h;
			const char *err = NULL;
			size_t n = wsf_encode(buf, WSF_BINARY, 1, lens[i], m ? mask : NULL);

			CHECK(n == wsf_header_len(lens[i], m));
			CHECK(wsf_decode(buf, n, &h, &err) == (ssize_t)n);
			CHECK(h.len == lens[i] && h.fin == 1 && h.opcode == WSF_BINARY);
			CHECK(h.masked == m);
			if (m)
				CHECK(memcmp(h.mask, mask, 4) == 0);
			/* Every shorter prefix is incomplete, never an error. */
			for (size_t k = 0; k < n; k++)
				CHECK(wsf_decode(buf, k, &h, &err) == 0);
		}
	}
}

static void test_decode_errors(void)
{
	struct wsf_header h;
	const char *err = NULL;
	uint8_t rsv[2] = {0xc2, 0x00};            /* RSV1 set */
	uint8_t op[2] = {0x83, 0x00};             /* opcode 3 */
	uint8_t bigping[4] = {0x89, 126, 0, 200}; /* control frame > 125 */
	uint8_t fragping[2] = {0x09, 0x00};       /* control frame without FIN */
	uint8_t nonmin[4] = {0x82, 126, 0, 5};    /* 16-bit length < 126 */
	uint8_t top[10] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};

	CHECK(wsf_decode(rsv, 2, &h, &err) == -1 && err);
	CHECK(wsf_decode(op, 2, &h, &err) == -1);
	CHECK(wsf_decode(bigping, 4, &h, &err) == -1);
	CHECK(wsf_decode(fragping, 2, &h, &err) == -1);
	CHECK(wsf_decode(nonmin, 4, &h, &err) == -1);
	CHECK(wsf_decode(top, 10, &h, &err) == -1);
}

static void test_mask_matches_bytewise(void)
{
	uint8_t src[300], fast[300], slow[300];
	const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + 3);
	for (size_t phase = 0; phase < 4; phase++) {
		for (size_t len = 0; len < sizeof(src); len += 13) {
			size_t ph = wsf_mask(fast, src, len, mask, phase);

			for (size_t i = 0; i < len; i++)
				slow[i] = src[i] ^ mask[(phase + i) & 3];
			CHECK(memcmp(fast, slow, len) == 0);
			CHECK(ph == ((phase + len) & 3));
		}
	}
	/* In place, and masking twice restores the data. */
	memcpy(fast, src, sizeof(src));
	wsf_mask(fast, fast, sizeof(src), mask, 1);
	wsf_mask(fast, fast, sizeof(src), mask, 1);
	CHECK(memcmp(fast, src, sizeof(src)) == 0);
}

int main(void)
{
	RUN(test_round_trip_lengths);
	RUN(test_decode_errors);
	RUN(test_mask_matches_bytewise);
	UNIT_END();
}
