/*
 * common/tlsbuf.c - a buffering BIO between TLS and its socket.
 * See tlsbuf.h.
 */
#include <limits.h>

#include "tlsbuf.h"

int tlsbuf_attach(SSL *ssl, size_t rsize, size_t wsize)
{
	BIO *sock = SSL_get_rbio(ssl);
	BIO *buf;

	if (!sock || sock != SSL_get_wbio(ssl) || rsize > INT_MAX || wsize > INT_MAX)
		return -1;
	buf = BIO_new(BIO_f_buffer());
	if (!buf || BIO_set_read_buffer_size(buf, (long)rsize) != 1 ||
	    (wsize && BIO_set_write_buffer_size(buf, (long)wsize) != 1) || !BIO_up_ref(sock)) {
		BIO_free(buf);
		return -1;
	}
	BIO_push(buf, sock); /* the chain holds its own reference to sock */
	if (wsize) {
		/* Both ways through buf: one reference each. */
		if (!BIO_up_ref(buf)) {
			BIO_free_all(buf);
			return -1;
		}
		SSL_set0_rbio(ssl, buf);
		SSL_set0_wbio(ssl, buf);
	} else {
		SSL_set0_rbio(ssl, buf);
	}
	/* Records come whole through buf: TLS asks for header, then body. */
	SSL_set_read_ahead(ssl, 0);
	return 0;
}

int tlsbuf_pending(const SSL *ssl)
{
	BIO *r = SSL_get_rbio(ssl);

	return SSL_has_pending(ssl) || (r && BIO_pending(r) > 0);
}

int tlsbuf_flush(SSL *ssl)
{
	BIO *b = SSL_get_wbio(ssl);

	if (!b || !BIO_wpending(b))
		return 1;
	if (BIO_flush(b) <= 0 && !BIO_should_retry(b))
		return 1; /* the socket failed: the next read or write finds out */
	return !BIO_wpending(b);
}

/* A record: at most 16 KiB of plaintext, and TLSBUF_RECORD_OVERHEAD. */
#define TLS_MAX_FRAG 16384u

size_t tlsbuf_fit(size_t used, size_t wsize, size_t n)
{
	size_t room = wsize > used ? wsize - used : 0;
	size_t whole = room / (TLS_MAX_FRAG + TLSBUF_RECORD_OVERHEAD), rest;

	if (n <= whole * TLS_MAX_FRAG)
		return n;
	rest = room - whole * (TLS_MAX_FRAG + TLSBUF_RECORD_OVERHEAD);
	if (rest > TLSBUF_RECORD_OVERHEAD &&
	    n - whole * TLS_MAX_FRAG <= rest - TLSBUF_RECORD_OVERHEAD)
		return n;
	return whole * TLS_MAX_FRAG;
}
