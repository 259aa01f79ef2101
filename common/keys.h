/*
 * common/keys.h - Ed25519 agent keys (libsodium).
 *
 * Private key file: one line "ed25519-secret:<base64 of the 32-byte seed>\n",
 * mode 0600.  Public key text: "ed25519:<base64 of 32 bytes>".
 */
#ifndef RELAIS_COMMON_KEYS_H
#define RELAIS_COMMON_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEY_PUB_LEN    32
#define KEY_SECRET_LEN 64 /* libsodium's seed||pubkey form */
#define KEY_SIG_LEN    64
#define KEY_TEXT_MAX   64 /* "ed25519:" + 44 base64 chars + NUL fits */

/** Initialise libsodium; returns 0, or -1 when it cannot start. */
int keys_init(void);

/**
 * Create a new key pair and write the private key to path with mode 0600,
 * refusing to overwrite an existing file (O_EXCL).  On success fills pub and
 * returns 0; on failure writes a message to err (errlen bytes) and returns -1.
 */
int keys_generate_file(const char *path, uint8_t pub[KEY_PUB_LEN], char *err, size_t errlen);

/**
 * Load a private key file.  Refuses a symbolic link, anything but a regular
 * file (a FIFO fails at once, never blocks), a file readable or writable by
 * group or others, and a malformed file, with a message in err.  Fills secret
 * (caller wipes it with sodium_memzero) and pub.
 */
int keys_load_private(const char *path, uint8_t secret[KEY_SECRET_LEN], uint8_t pub[KEY_PUB_LEN],
                      char *err, size_t errlen);

/** Parse "ed25519:<base64>" into pub; returns 0 or -1 (bad prefix, base64 or length). */
int keys_parse_public(const char *text, uint8_t pub[KEY_PUB_LEN]);

/** Format pub as "ed25519:<base64>" into out (KEY_TEXT_MAX bytes). */
void keys_format_public(const uint8_t pub[KEY_PUB_LEN], char out[KEY_TEXT_MAX]);

/** Sign msg with secret into sig. */
void keys_sign(const uint8_t secret[KEY_SECRET_LEN], const uint8_t *msg, size_t len,
               uint8_t sig[KEY_SIG_LEN]);

/** Verify sig over msg with pub; returns 0 when valid, -1 otherwise. */
int keys_verify(const uint8_t pub[KEY_PUB_LEN], const uint8_t *msg, size_t len,
                const uint8_t sig[KEY_SIG_LEN]);

/** Fill buf with n cryptographically random bytes. */
void keys_random(uint8_t *buf, size_t n);

#endif
