/*
 * agent/main.c - relais-agent: command line, keys, configuration, loop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/nofile.h"
#include "agent.h"
#include "resolve.h"
#include "udpflow.h"
#include "upstream.h"
#include "../common/conn.h"
#include "wsclient.h"

#define RELAIS_VERSION "0.1.0"

struct agent agent;
static int debug_logging; /* -d: kept across reloads */

static int signal_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len);

static const struct lws_protocols protocols[] = {
    {CONN_PROTOCOL, conn_callback, 0, 0, 0, NULL, 0},
    {AGENT_PROTO_UDP, udpflow_callback, 0, 0, 0, NULL, 0},
    {AGENT_PROTO_SIGNAL, signal_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: relais-agent [-t] [-d] -c agent.yaml\n"
	        "       relais-agent keygen FILE     write a new private key (0600)\n"
	        "       relais-agent pubkey FILE     print the public key of FILE\n"
	        "       relais-agent --help | --version\n"
	        "  -c FILE   configuration file (default /etc/relais/agent.yaml)\n"
	        "  -t        check the configuration and key, print 'configuration OK' and exit\n"
	        "  -d        debug logging\n"
	        "Signals: HUP reloads the configuration, TERM drains then exits, INT exits.\n");
}

static int cmd_keygen(const char *file)
{
	uint8_t pub[KEY_PUB_LEN];
	char err[512], text[KEY_TEXT_MAX];

	if (keys_generate_file(file, pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "relais-agent: %s\n", err);
		return 1;
	}
	keys_format_public(pub, text);
	printf("%s\n", text);
	return 0;
}

static int cmd_pubkey(const char *file)
{
	uint8_t pub[KEY_PUB_LEN], secret[KEY_SECRET_LEN];
	char err[512], text[KEY_TEXT_MAX];

	if (keys_load_private(file, secret, pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "relais-agent: %s\n", err);
		return 1;
	}
	sodium_memzero(secret, sizeof(secret));
	keys_format_public(pub, text);
	printf("%s\n", text);
	return 0;
}

static void lws_log_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	log_msg(level == LLL_ERR ? LOG_WARN : LOG_DEBUG, "lws: %.*s", (int)n, line);
}

static void agent_stop(void)
{
	agent.interrupted = 1;
	lws_cancel_service(agent.ctx);
}

/*
 * SIGHUP: load the configuration and its key into temporaries and swap both
 * in only when both are good; any failure keeps the old pair.  The tunnel
 * always reconnects, so new routes are declared and a new key (a rotation)
 * is used at once: the edge must already list the new public key.
 */
static void agent_reload(void)
{
	uint8_t secret[KEY_SECRET_LEN], pub[KEY_PUB_LEN];
	struct agent_config n;
	char err[512], text[KEY_TEXT_MAX];
	int rotated;

	log_info("reloading %s", agent.cfg_file);
	if (config_agent_load(agent.cfg_file, &n) != 0) {
		log_error("reload failed: configuration has errors; keeping the old one");
		return;
	}
	if (keys_load_private(n.key, secret, pub, err, sizeof(err)) < 0) {
		log_error("reload failed: %s; keeping the old configuration and key", err);
		config_agent_free(&n);
		return;
	}
	rotated = memcmp(pub, agent.pub, KEY_PUB_LEN) != 0;
	memcpy(agent.secret, secret, KEY_SECRET_LEN);
	memcpy(agent.pub, pub, KEY_PUB_LEN);
	sodium_memzero(secret, sizeof(secret));
	config_agent_free(&agent.cfg);
	agent.cfg = n;
	log_init("relais-agent", debug_logging ? LOG_DEBUG : agent.cfg.log_level);
	if (rotated) {
		keys_format_public(agent.pub, text);
		log_info("new agent key %s", text);
	}
	log_info("configuration reloaded; reconnecting to declare the routes again");
	if (agent.ws)
		wsc_close(agent.ws, "configuration reloaded");
}

static int signal_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
	struct signalfd_siginfo si;

	if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED)
		resolve_dispatch();
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
	while (read(lws_get_socket_fd(wsi), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			agent_reload();
		else if (si.ssi_signo == SIGTERM)
			agent_drain();
		else
			agent_stop();
	}
	return 0;
}

static int agent_signals(void)
{
	sigset_t set;
	lws_sock_file_fd_type u;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -1;
	u.filefd = fd;
	return lws_adopt_descriptor_vhost(agent.vh, LWS_ADOPT_RAW_FILE_DESC, u, AGENT_PROTO_SIGNAL,
	                                  NULL)
	           ? 0
	           : -1;
}

static int agent_start(void)
{
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.pt_serv_buf_size = 128 * 1024;
	info.timeout_secs = 10;
	nofile_raise(); /* before lws sizes its tables from the limit */
	agent.ctx = lws_create_context(&info);
	if (!agent.ctx) {
		log_error("cannot create the event loop");
		return -1;
	}
	memset(&info, 0, sizeof(info));
	info.vhost_name = "agent";
	info.port = CONTEXT_PORT_NO_LISTEN; /* the agent never listens */
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.timeout_secs = 10;
	agent.vh = lws_create_vhost(agent.ctx, &info);
	if (!agent.vh) {
		log_error("cannot create the client vhost (bad edge_ca?)");
		return -1;
	}
	if (agent_signals() < 0) {
		log_error("cannot set up signal handling: %s", strerror(errno));
		return -1;
	}
	agent_tunnel_start();
	return 0;
}

static int agent_load_key(void)
{
	char err[512];

	if (keys_load_private(agent.cfg.key, agent.secret, agent.pub, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *file = "/etc/relais/agent.yaml";
	int check = 0, debug = 0, c, rc = 1;
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
	                                     {"version", no_argument, NULL, 'V'},
	                                     {NULL, 0, NULL, 0}};

	log_init("relais-agent", LOG_INFO);
	if (keys_init() < 0) {
		fprintf(stderr, "relais-agent: cannot initialise libsodium\n");
		return 1;
	}
	if (argc == 3 && strcmp(argv[1], "keygen") == 0) {
		/* "keygen --help" would write a key named --help. */
		if (argv[2][0] == '-') {
			fprintf(stderr,
			        "relais-agent: keygen FILE: '%s' looks like an option, not a "
			        "file name (write ./%s for a file of that name)\n",
			        argv[2], argv[2]);
			return 2;
		}
		return cmd_keygen(argv[2]);
	}
	if (argc == 3 && strcmp(argv[1], "pubkey") == 0)
		return cmd_pubkey(argv[2]);
	while ((c = getopt_long(argc, argv, "c:tdhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("relais-agent %s (protocol %d)\n", RELAIS_VERSION, PROTO_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	agent.cfg_file = file;
	if (config_agent_load(file, &agent.cfg) != 0)
		return 1;
	if (agent_load_key() < 0) {
		config_agent_free(&agent.cfg);
		return 1;
	}
	if (check) {
		printf("configuration OK\n");
		rc = 0;
		goto out;
	}
	debug_logging = debug;
	log_init("relais-agent", debug ? LOG_DEBUG : agent.cfg.log_level);
	lws_set_log_level(LLL_ERR | (debug ? LLL_WARN : 0), lws_log_emit);
	if (agent_start() == 0) {
		log_info("relais-agent %s: edge %s, %zu routes, %zu streams", RELAIS_VERSION,
		         agent.cfg.edge, agent.cfg.nroutes, agent.cfg.nstreams);
		rc = 0;
		while (!agent.interrupted && lws_service(agent.ctx, 0) >= 0)
			;
		log_info("exiting");
	}
	lws_sul_cancel(&agent.sul_connect);
	lws_sul_cancel(&agent.sul_tick);
	resolve_shutdown();
	conn_exiting();
	if (agent.ctx)
		lws_context_destroy(agent.ctx);
out:
	sodium_memzero(agent.secret, sizeof(agent.secret));
	config_agent_free(&agent.cfg);
	return rc;
}
