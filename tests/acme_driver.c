/*
 * tests/acme_driver.c - edge/acme.c on its own, for tests/e2e/test_acme.py.
 *
 * Plays the part of relais-edge around the ACME module: starts it with the
 * tls settings from the command line, calls acme_want() for every host,
 * answers GET /.well-known/acme-challenge/<token> on 127.0.0.1:PORT from
 * acme_challenge() (with a trivial blocking server thread), and logs
 * "driver: certificates updated" whenever acme_take_updated() says so.
 * While the file given with -f exists, challenge requests get a 404, to
 * make validations fail on purpose.  SIGHUP calls acme_want() again for every
 * host; SIGTERM and SIGINT stop the module and exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "edge/acme.h"
#include "edge/http1.h"

#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"

static const char *fail_file;
static int listen_fd = -1;

static void usage(void)
{
	fprintf(stderr,
	        "usage: acme_driver -d CERT_DIR -D DIRECTORY_URL -p HTTP_PORT [-C CA_FILE]\n"
	        "                   [-e EMAIL] [-r RENEW_DAYS] [-f FAIL_FILE] [-v] HOST...\n");
	exit(2);
}

static void send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void reply(int fd, int status, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, http1_reason(status), strlen(body));

	send_all(fd, head, (size_t)n);
	send_all(fd, body, strlen(body));
}

static void serve_one(int fd)
{
	static struct http1_head h;
	char buf[8192], token[ACME_TOKEN_MAX + 1], keyauth[ACME_KEYAUTH_MAX];
	size_t got = 0, plen = strlen(CHALLENGE_PREFIX);
	struct timeval tv = {5, 0};
	ssize_t r = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(buf)) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - got, 0);

		if (n <= 0)
			return;
		got += (size_t)n;
		r = http1_parse_request(buf, got, sizeof(buf), &h, NULL, NULL);
		if (r != HTTP1_INCOMPLETE)
			break;
	}
	if (r <= 0) {
		reply(fd, 400, "bad request\n");
		return;
	}
	if (h.target_len <= plen || h.target_len - plen > ACME_TOKEN_MAX ||
	    memcmp(h.target, CHALLENGE_PREFIX, plen) != 0) {
		reply(fd, 404, "not found\n");
		return;
	}
	memcpy(token, h.target + plen, h.target_len - plen);
	token[h.target_len - plen] = '\0';
	if (fail_file != NULL && access(fail_file, F_OK) == 0) {
		log_info("driver: refused challenge %s (fail file present)", token);
		reply(fd, 404, "not found\n");
	} else if (acme_challenge(token, keyauth, sizeof(keyauth))) {
		log_info("driver: served challenge %s", token);
		reply(fd, 200, keyauth);
	} else {
		log_info("driver: unknown challenge %s", token);
		reply(fd, 404, "not found\n");
	}
}

static void *server_main(void *arg)
{
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		serve_one(fd);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	struct edge_config cfg;
	struct sockaddr_in sa;
	pthread_t server;
	sigset_t set;
	int c, port = 0, one = 1, debug = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.tls.acme = 1;
	cfg.tls.acme_renew_days = 30;
	while ((c = getopt(argc, argv, "d:D:p:C:e:r:f:v")) != -1) {
		switch (c) {
		case 'd':
			cfg.tls.cert_dir = optarg;
			break;
		case 'D':
			cfg.tls.acme_directory = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'C':
			cfg.tls.acme_ca = optarg;
			break;
		case 'e':
			cfg.tls.acme_email = optarg;
			break;
		case 'r':
			cfg.tls.acme_renew_days = (uint32_t)atoi(optarg);
			break;
		case 'f':
			fail_file = optarg;
			break;
		case 'v':
			debug = 1;
			break;
		default:
			usage();
		}
	}
	if (cfg.tls.cert_dir == NULL || cfg.tls.acme_directory == NULL || port <= 0 ||
	    port > 65535 || optind >= argc)
		usage();
	log_init("acme_driver", debug ? LOG_DEBUG : LOG_INFO);

	/* signals are taken with sigtimedwait below; every thread inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listen_fd, 64) < 0) {
		log_error("driver: cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
		return 1;
	}
	if (pthread_create(&server, NULL, server_main, NULL) != 0) {
		log_error("driver: cannot start the challenge server");
		return 1;
	}
	pthread_detach(server);
	if (acme_start(&cfg, NULL) < 0)
		return 1;
	log_info("driver: ready, challenges on 127.0.0.1:%d", port);
	for (int i = optind; i < argc; i++)
		acme_want(argv[i]);

	for (;;) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		int sig = sigtimedwait(&set, NULL, &ts);

		if (acme_take_updated())
			log_info("driver: certificates updated");
		if (sig == SIGHUP) {
			log_info("driver: wanting every host again");
			for (int i = optind; i < argc; i++)
				acme_want(argv[i]);
		} else if (sig == SIGINT || sig == SIGTERM) {
			break;
		}
	}
	acme_stop();
	log_info("driver: stopped");
	return 0;
}
