/*
 * common/keys.c - Ed25519 agent keys (libsodium).
 *
 * The private key file stores only the 32-byte seed; the 64-byte libsodium
 * secret key and the public key are derived from it on load.  Every copy of
 * secret material on the stack is wiped before returning.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define KEY_SEED_LEN     32
#define KEY_SECRET_PFX   "ed25519-secret:"
#define KEY_PUBLIC_PFX   "ed25519:"
#define KEY_FILE_MAX     256 /* a valid file is 60 bytes; anything bigger is not ours */
#define KEY_B64_SEED_LEN 44  /* base64 (with padding) of 32 bytes */

int keys_init(void)
{
	return sodium_init() < 0 ? -1 : 0;
}

/* Write all of buf, retrying on EINTR and short writes. */
static int keys_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int keys_generate_file(const char *path, uint8_t pub[KEY_PUB_LEN], char *err, size_t errlen)
{
	uint8_t seed[KEY_SEED_LEN], secret[KEY_SECRET_LEN];
	char line[sizeof(KEY_SECRET_PFX) + KEY_B64_SEED_LEN + 2];
	int fd, rc = -1;
	size_t plen = strlen(KEY_SECRET_PFX);

	if (keys_init() < 0) {
		snprintf(err, errlen, "cannot initialise libsodium");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			snprintf(err, errlen, "%s exists; refusing to overwrite", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pub, secret, seed);
	memcpy(line, KEY_SECRET_PFX, plen);
	sodium_bin2base64(line + plen, sizeof(line) - plen, seed, sizeof(seed),
	                  sodium_base64_VARIANT_ORIGINAL);
	strcat(line, "\n");

	/* O_EXCL guarantees a new file, but make its mode exactly 0600 whatever
	 * the umask or a default ACL on the directory did. */
	if (fchmod(fd, 0600) < 0 || keys_write_all(fd, line, strlen(line)) < 0 || fsync(fd) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path); /* never leave a truncated key behind */
		goto out;
	}
	if (close(fd) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(path);
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(secret, sizeof(secret));
	sodium_memzero(line, sizeof(line));
	if (rc < 0)
		sodium_memzero(pub, KEY_PUB_LEN);
	return rc;
}

/* Read the whole (small) file into buf; returns bytes read or -1. */
static ssize_t keys_read_small(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int keys_load_private(const char *path, uint8_t secret[KEY_SECRET_LEN], uint8_t pub[KEY_PUB_LEN],
                      char *err, size_t errlen)
{
	char buf[KEY_FILE_MAX + 1];
	uint8_t seed[KEY_SEED_LEN];
	size_t plen = strlen(KEY_SECRET_PFX), seedlen = 0, b64len;
	struct stat st;
	ssize_t n;
	int fd, rc = -1;

	if (keys_init() < 0) {
		snprintf(err, errlen, "cannot initialise libsodium");
		return -1;
	}
	/* O_NONBLOCK: opening a FIFO must not wait for a writer.  Only a regular
	 * file gets past the fstat below, and reading one never blocks anyway. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen, "%s is a symbolic link; refusing to follow it", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(
		    err, errlen,
		    "%s is readable or writable by group/others (mode %04o); run: chmod 600 %s",
		    path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	n = keys_read_small(fd, buf, sizeof(buf));
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* Exactly "ed25519-secret:" BASE64 with an optional final newline. */
	b64len = (size_t)n;
	if (b64len > 0 && buf[b64len - 1] == '\n')
		b64len--;
	if (b64len > 0 && buf[b64len - 1] == '\r')
		b64len--;
	if ((size_t)n > KEY_FILE_MAX || b64len < plen || memcmp(buf, KEY_SECRET_PFX, plen) != 0 ||
	    sodium_base642bin(seed, sizeof(seed), buf + plen, b64len - plen, NULL, &seedlen, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    seedlen != sizeof(seed)) {
		snprintf(err, errlen, "%s: not a relais private key", path);
		goto out;
	}
	crypto_sign_seed_keypair(pub, secret, seed);
	rc = 0;
out:
	close(fd);
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

int keys_parse_public(const char *text, uint8_t pub[KEY_PUB_LEN])
{
	size_t plen = strlen(KEY_PUBLIC_PFX), len = 0;

	if (text == NULL || strncmp(text, KEY_PUBLIC_PFX, plen) != 0)
		return -1;
	/* b64_end NULL: fails unless the whole text is consumed; no padding slack */
	if (sodium_base642bin(pub, KEY_PUB_LEN, text + plen, strlen(text + plen), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    len != KEY_PUB_LEN)
		return -1;
	return 0;
}

void keys_format_public(const uint8_t pub[KEY_PUB_LEN], char out[KEY_TEXT_MAX])
{
	size_t plen = strlen(KEY_PUBLIC_PFX);

	memcpy(out, KEY_PUBLIC_PFX, plen);
	sodium_bin2base64(out + plen, KEY_TEXT_MAX - plen, pub, KEY_PUB_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
}

void keys_sign(const uint8_t secret[KEY_SECRET_LEN], const uint8_t *msg, size_t len,
               uint8_t sig[KEY_SIG_LEN])
{
	crypto_sign_detached(sig, NULL, msg, len, secret);
}

int keys_verify(const uint8_t pub[KEY_PUB_LEN], const uint8_t *msg, size_t len,
                const uint8_t sig[KEY_SIG_LEN])
{
	return crypto_sign_verify_detached(sig, msg, len, pub) == 0 ? 0 : -1;
}

void keys_random(uint8_t *buf, size_t n)
{
	randombytes_buf(buf, n);
}
