/*
 * tests/unit/common/keys.c - key files, signatures and public key text.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/keys.h"
#include "tests/unit/unit.h"

static char dir[] = "/tmp/relais-keys-XXXXXX";

static void path_of(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

static void test_generate_and_load(void)
{
	uint8_t pub[KEY_PUB_LEN], pub2[KEY_PUB_LEN], secret[KEY_SECRET_LEN];
	char path[256], err[512], buf[128];
	struct stat st;
	FILE *f;

	path_of(path, sizeof(path), "agent.key");
	CHECK(keys_generate_file(path, pub, err, sizeof(err)) == 0);
	CHECK(stat(path, &st) == 0);
	CHECK((st.st_mode & 07777) == 0600);

	f = fopen(path, "r");
	CHECK(f != NULL);
	if (f != NULL) {
		CHECK(fgets(buf, sizeof(buf), f) != NULL);
		fclose(f);
		CHECK(strncmp(buf, "ed25519-secret:", 15) == 0);
		CHECK(strlen(buf) == 15 + 44 + 1);
		CHECK(buf[strlen(buf) - 1] == '\n');
	}

	CHECK(keys_load_private(path, secret, pub2, err, sizeof(err)) == 0);
	CHECK(memcmp(pub, pub2, KEY_PUB_LEN) == 0);
	/* libsodium's secret key is seed || public key */
	CHECK(memcmp(secret + 32, pub, KEY_PUB_LEN) == 0);
	sodium_memzero(secret, sizeof(secret));
}

static void test_refuse_overwrite(void)
{
	uint8_t pub[KEY_PUB_LEN];
	char path[256], err[512], want[600];

	path_of(path, sizeof(path), "exists.key");
	write_file(path, "keep me\n", 0600);
	CHECK(keys_generate_file(path, pub, err, sizeof(err)) == -1);
	snprintf(want, sizeof(want), "%s exists; refusing to overwrite", path);
	CHECK(strcmp(err, want) == 0);

	/* a symlink is refused too, and its target is left alone */
	path_of(want, sizeof(want), "link.key");
	CHECK(symlink(path, want) == 0);
	CHECK(keys_generate_file(want, pub, err, sizeof(err)) == -1);
	CHECK(strstr(err, "refusing to overwrite") != NULL);
}

static void test_refuse_open_mode(void)
{
	uint8_t pub[KEY_PUB_LEN], secret[KEY_SECRET_LEN];
	char path[256], err[512], want[800];

	path_of(path, sizeof(path), "open.key");
	CHECK(keys_generate_file(path, pub, err, sizeof(err)) == 0);
	CHECK(chmod(path, 0644) == 0);
	CHECK(keys_load_private(path, secret, pub, err, sizeof(err)) == -1);
	snprintf(want, sizeof(want),
	         "%s is readable or writable by group/others (mode 0644); run: chmod 600 %s", path,
	         path);
	CHECK(strcmp(err, want) == 0);

	CHECK(chmod(path, 0620) == 0);
	CHECK(keys_load_private(path, secret, pub, err, sizeof(err)) == -1);
	CHECK(strstr(err, "(mode 0620)") != NULL);

	CHECK(chmod(path, 0400) == 0);
	CHECK(keys_load_private(path, secret, pub, err, sizeof(err)) == 0);
}

static void test_refuse_bad_files(void)
{
	static const char *const bad[] = {
	    "",
	    "hello\n",
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	    "ed25519-secret:AAAA\n",
	    "ed25519-secret:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
	    "ed25519-secret:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nmore\n",
	    "ed25519-secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	    "ed25519-secret:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
	};
	uint8_t pub[KEY_PUB_LEN], secret[KEY_SECRET_LEN];
	char path[256], err[512], want[600], link[256];

	path_of(path, sizeof(path), "bad.key");
	snprintf(want, sizeof(want), "%s: not a relais private key", path);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unlink(path);
		write_file(path, bad[i], 0600);
		CHECK(keys_load_private(path, secret, pub, err, sizeof(err)) == -1);
		if (strcmp(err, want) != 0)
			fprintf(stderr, "  case %zu: %s\n", i, err);
		CHECK(strcmp(err, want) == 0);
	}
	/* the same seed without a final newline is fine */
	unlink(path);
	write_file(path, "ed25519-secret:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0600);
	CHECK(keys_load_private(path, secret, pub, err, sizeof(err)) == 0);

	/* missing file, symlink, directory */
	path_of(link, sizeof(link), "missing.key");
	CHECK(keys_load_private(link, secret, pub, err, sizeof(err)) == -1);
	CHECK(strstr(err, "No such file or directory") != NULL);
	path_of(link, sizeof(link), "symlink.key");
	CHECK(symlink(path, link) == 0);
	CHECK(keys_load_private(link, secret, pub, err, sizeof(err)) == -1);
	CHECK(strstr(err, "symbolic link") != NULL);
	CHECK(keys_load_private(dir, secret, pub, err, sizeof(err)) == -1);
	CHECK(strstr(err, "not a regular file") != NULL);
}

static void test_sign_verify(void)
{
	uint8_t pub[KEY_PUB_LEN], other[KEY_PUB_LEN], secret[KEY_SECRET_LEN], sig[KEY_SIG_LEN];
	char path[256], err[512];
	const uint8_t msg[] = "relais-auth-v1 challenge";

	path_of(path, sizeof(path), "sign.key");
	CHECK(keys_generate_file(path, pub, err, sizeof(err)) == 0);
	CHECK(keys_load_private(path, secret, pub, err, sizeof(err)) == 0);
	keys_sign(secret, msg, sizeof(msg), sig);
	CHECK(keys_verify(pub, msg, sizeof(msg), sig) == 0);

	sig[10] ^= 0x01;
	CHECK(keys_verify(pub, msg, sizeof(msg), sig) == -1);
	sig[10] ^= 0x01;
	CHECK(keys_verify(pub, msg, sizeof(msg) - 1, sig) == -1);

	path_of(path, sizeof(path), "other.key");
	CHECK(keys_generate_file(path, other, err, sizeof(err)) == 0);
	CHECK(memcmp(pub, other, KEY_PUB_LEN) != 0);
	CHECK(keys_verify(other, msg, sizeof(msg), sig) == -1);
	sodium_memzero(secret, sizeof(secret));
}

static void test_public_text(void)
{
	uint8_t pub[KEY_PUB_LEN], back[KEY_PUB_LEN];
	char text[KEY_TEXT_MAX];

	keys_random(pub, sizeof(pub));
	keys_format_public(pub, text);
	CHECK(strncmp(text, "ed25519:", 8) == 0);
	CHECK(strlen(text) == 8 + 44);
	CHECK(keys_parse_public(text, back) == 0);
	CHECK(memcmp(pub, back, KEY_PUB_LEN) == 0);

	memset(pub, 0, sizeof(pub));
	keys_format_public(pub, text);
	CHECK(strcmp(text, "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") == 0);
}

static void test_public_bad(void)
{
	static const char *const bad[] = {
	    "",
	    "ed25519:",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "ED25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",    /* no padding */
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",   /* 31 bytes */
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 33 bytes */
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ",  /* trailing space */
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", /* trailing newline */
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",   /* non-canonical */
	    "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_",   /* url-safe alphabet */
	    "ed25519-secret:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	};
	uint8_t pub[KEY_PUB_LEN];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (keys_parse_public(bad[i], pub) == 0) {
			fprintf(stderr, "  accepted '%s'\n", bad[i]);
			CHECK(!"bad public key accepted");
		}
	}
	CHECK(keys_parse_public(NULL, pub) == -1);
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void)
{
	if (keys_init() < 0 || mkdtemp(dir) == NULL) {
		perror("setup");
		return 1;
	}
	RUN(test_generate_and_load);
	RUN(test_refuse_overwrite);
	RUN(test_refuse_open_mode);
	RUN(test_refuse_bad_files);
	RUN(test_sign_verify);
	RUN(test_public_text);
	RUN(test_public_bad);
	cleanup();
	UNIT_END();
}
