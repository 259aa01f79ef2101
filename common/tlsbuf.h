/*
 * common/tlsbuf.h - buffered TLS socket I/O for bulk connections (the
 * tunnel at both ends, the agent's https:// upstreams).
 *
 * OpenSSL's own read-ahead (SSL_set_read_ahead) reads several records per
 * read(2), but before each record it moves everything still buffered to the
 * buffer's start (an alignment step in the 3.0 record layer): with a 128 KiB
 * buffer that is about four copies of every byte.  A buffering BIO between
 * TLS and the socket reads as much per read(2) and copies each byte once.
 */
#ifndef RELAIS_COMMON_TLSBUF_H
#define RELAIS_COMMON_TLSBUF_H

#include <stddef.h>

#include <openssl/ssl.h>

/**
 * Put a buffering BIO between ssl and its socket BIO (set with
 * SSL_set_fd()): reads take up to rsize bytes per read(2); with wsize > 0,
 * writes gather up to wsize bytes until tlsbuf_flush().  Turns OpenSSL's
 * read-ahead off.  0, or -1 when out of memory (ssl unchanged then).
 */
int tlsbuf_attach(SSL *ssl, size_t rsize, size_t wsize);

/** 1 when input waits in TLS or in its read buffer: no POLLIN will say so. */
int tlsbuf_pending(const SSL *ssl);

/** Most bytes a record adds to its 16 KiB of plaintext, as OpenSSL writes
 * it: 22 in TLS 1.3 (header, content type, tag), 29 for AES-GCM in TLS 1.2
 * (and an explicit nonce), 85 for a CBC suite with SHA-384 (IV, MAC and up
 * to 16 bytes of padding), which an https:// service may still choose. */
#define TLSBUF_RECORD_OVERHEAD 128u

/** Bytes of n that go into a write buffer of wsize bytes holding used as
 * whole TLS records, a record's overhead counted generously; 0 when not
 * even one fits. */
size_t tlsbuf_fit(size_t used, size_t wsize, size_t n);

/** Write out what the write buffer holds: 1 when it is empty after.
 * It clears the buffer BIO's retry flags, which SSL_get_error() reads: never
 * call it between an SSL_read/SSL_write and that call (the read side shares
 * the BIO, so a WANT_READ would look like an EOF). */
int tlsbuf_flush(SSL *ssl);

#endif
