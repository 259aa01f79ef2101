/*
 * tests/unit/common/tlsbuf.c - the buffering BIO between TLS and a socket:
 * a real TLS 1.3 session over a socketpair, both ends buffered.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "../../../common/tlsbuf.h"
#include "../unit.h"

#define TOTAL (96u * 1024u)                     /* fits the socket buffers set below */
#define REC   (16384u + TLSBUF_RECORD_OVERHEAD) /* a full record, at most */

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;

	if (!ctx || !k || !x)
		abort();
	SSL_CTX_set_num_tickets(ctx, 0); /* nothing in flight after the handshake */
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
	X509_set_issuer_name(x, n);
	if (!X509_sign(x, k, EVP_sha256()) || SSL_CTX_use_certificate(ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, k) != 1)
		abort();
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx;
}

/* A connected pair of non-blocking TLS ends, handshake done. */
static int tls_pair(SSL_CTX *sc, SSL_CTX *cc, SSL **srv, SSL **cli, int fds[2])
{
	int big = 1 << 20;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
		setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	}
	*srv = SSL_new(sc);
	*cli = SSL_new(cc);
	if (!*srv || !*cli || !SSL_set_fd(*srv, fds[0]) || !SSL_set_fd(*cli, fds[1]))
		return -1;
	SSL_set_accept_state(*srv);
	SSL_set_connect_state(*cli);
	for (int i = 0; i < 100; i++) {
		int a = SSL_do_handshake(*srv), b = SSL_do_handshake(*cli);

		if (a == 1 && b == 1)
			return 0;
	}
	return -1;
}

/* Read until want bytes came or TLS has nothing left and the socket is
 * empty (what a poll loop would see as "wait for POLLIN"). */
static size_t read_all(SSL *ssl, int fd, uint8_t *out, size_t want, int *reads)
{
	size_t got = 0;

	while (got < want) {
		int k = SSL_read(ssl, out + got, 16384);
		int avail = 0;

		if (k > 0) {
			got += (size_t)k;
			(*reads)++;
			continue;
		}
		ioctl(fd, FIONREAD, &avail);
		if (SSL_get_error(ssl, k) != SSL_ERROR_WANT_READ ||
		    (!tlsbuf_pending(ssl) && !avail))
			break;
	}
	return got;
}

/*
 * Writes wait in the write buffer until tlsbuf_flush(); the reader's BIO
 * empties the socket in a few read(2)s and tlsbuf_pending() says what is
 * left in it, which SSL_has_pending() alone does not always see.
 */
static void test_buffered_both_ways(void)
{
	SSL_CTX *sc = server_ctx(), *cc = SSL_CTX_new(TLS_client_method());
	SSL *srv = NULL, *cli = NULL;
	uint8_t *in = malloc(TOTAL), *out = malloc(TOTAL);
	int fds[2], reads = 0, avail = -1;

	CHECK(cc && in && out && tls_pair(sc, cc, &srv, &cli, fds) == 0);
	CHECK(tlsbuf_attach(srv, 64 * 1024, 256 * 1024) == 0);
	CHECK(tlsbuf_attach(cli, 128 * 1024, 0) == 0);
	for (size_t i = 0; i < TOTAL; i++)
		out[i] = (uint8_t)(i * 7 + i / 251);
	for (size_t off = 0; off < TOTAL; off += 16384)
		CHECK(SSL_write(srv, out + off, 16384) == 16384);
	/* Nothing reached the socket yet. */
	ioctl(fds[1], FIONREAD, &avail);
	CHECK(avail == 0);
	CHECK(tlsbuf_flush(srv) == 1);
	ioctl(fds[1], FIONREAD, &avail);
	CHECK(avail > (int)TOTAL);
	/* One record read: the rest is in the client's BIO, not the socket, and
	 * TLS itself holds nothing (no POLLIN, no SSL_has_pending()). */
	CHECK(SSL_read(cli, in, 16384) == 16384);
	ioctl(fds[1], FIONREAD, &avail);
	CHECK(avail == 0);
	CHECK(!SSL_has_pending(cli) && tlsbuf_pending(cli));
	CHECK(read_all(cli, fds[1], in + 16384, TOTAL - 16384, &reads) == TOTAL - 16384);
	CHECK(memcmp(in, out, TOTAL) == 0);
	CHECK(!tlsbuf_pending(cli));
	CHECK(reads == (int)(TOTAL / 16384) - 1);
	/* The other way: the client writes unbuffered, straight to the socket. */
	CHECK(SSL_write(cli, "ping", 4) == 4);
	CHECK(tlsbuf_flush(cli) == 1);
	reads = 0;
	CHECK(read_all(srv, fds[0], in, 4, &reads) == 4 && memcmp(in, "ping", 4) == 0);
	SSL_free(srv);
	SSL_free(cli);
	close(fds[0]);
	close(fds[1]);
	SSL_CTX_free(sc);
	SSL_CTX_free(cc);
	free(in);
	free(out);
}

/*
 * tlsbuf_fit() hands TLS no more than the write buffer holds as whole
 * records: filling the buffer with what it allows never goes past its
 * size, and it allows nearly all the room.  Sizes around every multiple of
 * a record, in TLS 1.3, and in TLS 1.2 with the suite whose records are the
 * largest (CBC, SHA-384), which an https:// service may choose.
 */
static void fill_whole_records(SSL_CTX *cc)
{
	SSL_CTX *sc = server_ctx();
	SSL *srv = NULL, *cli = NULL;
	uint8_t *out = calloc(1, 64 * 1024), sink[65536];
	int fds[2], avail = -1;

	CHECK(cc && out && tls_pair(sc, cc, &srv, &cli, fds) == 0);
	CHECK(tlsbuf_attach(srv, 64 * 1024, 256 * 1024) == 0);
	for (size_t wsize = 16384; wsize < 4 * 16384 + 2 * TLSBUF_RECORD_OVERHEAD; wsize += 11) {
		size_t fit, total = 0, held;

		while ((held = (size_t)BIO_wpending(SSL_get_wbio(srv))),
		       (fit = tlsbuf_fit(held, wsize, 64 * 1024))) {
			CHECK(SSL_write(srv, out, (int)fit) == (int)fit);
			total += fit;
		}
		CHECK(held <= wsize);
		CHECK(held + REC > wsize && total >= held / REC * 16384);
		ioctl(fds[1], FIONREAD, &avail);
		CHECK(avail == 0);
		CHECK(tlsbuf_flush(srv) == 1);
		ioctl(fds[1], FIONREAD, &avail);
		CHECK(avail == (int)held);
		while (read(fds[1], sink, sizeof(sink)) > 0)
			;
	}
	SSL_free(srv);
	SSL_free(cli);
	close(fds[0]);
	close(fds[1]);
	SSL_CTX_free(sc);
	SSL_CTX_free(cc);
	free(out);
}

static void test_fit(void)
{
	const size_t o = TLSBUF_RECORD_OVERHEAD;
	SSL_CTX *cc = SSL_CTX_new(TLS_client_method());

	CHECK(tlsbuf_fit(0, o + 100, 100) == 100);
	CHECK(tlsbuf_fit(0, o + 100, 101) == 0);
	CHECK(tlsbuf_fit(100, 100, 1) == 0 && tlsbuf_fit(200, 100, 1) == 0);
	CHECK(tlsbuf_fit(0, 3 * REC, 64 * 1024) == 3 * 16384);
	CHECK(tlsbuf_fit(0, 3 * REC + o + 100, 3 * 16384 + 100) == 3 * 16384 + 100);
	CHECK(tlsbuf_fit(0, 3 * REC + o + 100, 3 * 16384 + 101) == 3 * 16384);

	fill_whole_records(SSL_CTX_new(TLS_client_method()));
	CHECK(cc && SSL_CTX_set_max_proto_version(cc, TLS1_2_VERSION) == 1 &&
	      SSL_CTX_set_cipher_list(cc, "ECDHE-ECDSA-AES256-SHA384") == 1);
	fill_whole_records(cc);
}

/* Sizes a BIO cannot take are refused and leave the session as it was. */
static void test_refused_sizes(void)
{
	SSL_CTX *cc = SSL_CTX_new(TLS_client_method());
	SSL *ssl = cc ? SSL_new(cc) : NULL;
	int fds[2];
	BIO *before;

	CHECK(ssl && socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0 && SSL_set_fd(ssl, fds[0]));
	before = SSL_get_rbio(ssl);
	CHECK(tlsbuf_attach(ssl, (size_t)1 << 40, 0) == -1);
	CHECK(tlsbuf_attach(ssl, 4096, (size_t)1 << 40) == -1);
	CHECK(SSL_get_rbio(ssl) == before && SSL_get_wbio(ssl) == before);
	CHECK(tlsbuf_flush(ssl) == 1); /* nothing buffered: nothing to do */
	SSL_free(ssl);
	SSL_CTX_free(cc);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	RUN(test_buffered_both_ways);
	RUN(test_refused_sizes);
	RUN(test_fit);
	UNIT_END();
}
