/*
 * edge/session.h - one authenticated (or authenticating) agent connection.
 */
#ifndef RELAIS_EDGE_SESSION_H
#define RELAIS_EDGE_SESSION_H

#include <libwebsockets.h>

#include "../common/addr.h"
#include "../common/tunnel.h"
#include "../common/window.h"
#include "../proto/frame.h"

#define SESSION_MAX_ROUTES 1024
#define SESSION_HASH       2048 /* streams by id: chains of 32 at 65,536 streams */
/* ROUTE frames one session may send, accepted or refused: each refusal is a
 * log line, and an agent declares its routes once per connection. */
#define SESSION_MAX_DECLARED (2 * SESSION_MAX_ROUTES)
/* Sessions one agent may hold at once (HA: a few).  Each may queue up to
 * TUNNEL_QUEUE_MAX for a peer that does not read: this bounds one agent's
 * share of the edge's memory. */
#define SESSION_MAX_PER_AGENT 32

struct eroute {
	uint32_t id;  /* the agent's route id */
	uint8_t kind; /* enum route_kind */
	uint16_t port_lo, port_hi;
	int no_redirect; /* HTTP: never redirect to https:// */
	uint32_t hsts;   /* HTTP: Strict-Transport-Security max-age, 0 = none */
	char host[PROTO_MAX_HOST + 1];
};

struct estream;

struct esession {
	struct lws *wsi;
	struct tunnel t;
	int authed;
	int buffered; /* TLS writes gathered by tlsbuf: no cork needed */
	int closing;  /* close once the queue drained */
	int draining; /* agent sent GOAWAY: no new streams */
	uint8_t challenge[PROTO_CHALLENGE_LEN];
	char agent[PROTO_MAX_NAME + 1]; /* name from edge.yaml once authenticated */
	uint8_t key[PROTO_PUBKEY_LEN];
	char peer[ADDR_TEXT_MAX];
	struct eroute *routes; /* accepted routes */
	size_t nroutes;
	size_t ndeclared; /* ROUTE frames received, accepted or not */
	uint32_t window;  /* initial per-stream credit */
	uint32_t next_stream;
	size_t nstreams;
	struct estream *streams;            /* list of live streams */
	struct estream *hash[SESSION_HASH]; /* streams by id */
	uint64_t last_rx_us;
	struct probe probe;       /* round-trip probe for window growth */
	struct window_pool wpool; /* its streams' window growth */
	size_t siblings;          /* its agent's sessions, itself included */
	uint64_t connected_us;
	lws_sorted_usec_list_t sul;    /* auth deadline, then keepalive */
	lws_sorted_usec_list_t sul_rx; /* reads what TLS read ahead */
	uint64_t rx_calls;             /* RECEIVE callbacks so far */
	struct esession *next;         /* registry list */
	struct esession *pnext;        /* unauthenticated sessions */
};

/** The lws protocol callback of the agent endpoint (relais.v1 over wss). */
int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

/** Queue a frame to the agent and ask for a writeable callback. 0 or -1. */
int session_send(struct esession *s, const struct frame *f);

/** Ask the loop for a writeable callback on the session. */
void session_want_write(struct esession *s);

/** Close the session asynchronously (logged reason). */
void session_kill(struct esession *s, const char *why);

#endif
