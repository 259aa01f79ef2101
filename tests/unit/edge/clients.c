/*
 * tests/unit/edge/clients.c - connections per client address, counted by
 * descriptor and socket inode, with closes nobody reports.
 */
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "edge/clients.h"
#include "tests/unit/unit.h"

static struct addr A(const char *text) {
	struct addr a;

	CHECK(addr_parse(text, &a) == 0);
	return a;
}

/* A connected socket, as accept would hand one out. */
static int
sock(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	close(sv[1]);
	return sv[0];
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void test_key(void)
{
	uint8_t a[CLIENT_KEY_LEN], b[CLIENT_KEY_LEN];
	struct addr x = A("192.0.2.1:1000"), y = A("192.0.2.1:2000"), z = A("192.0.2.2:1000");
	struct addr m = A("[::ffff:192.0.2.1]:3000");

	client_key(&x, a);
	client_key(&y, b);
	CHECK(memcmp(a, b, sizeof(a)) == 0); /* the port is not the client */
	client_key(&z, b);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	client_key(&m, b);
	CHECK(memcmp(a, b, sizeof(a)) == 0); /* a dual-stack port's IPv4 client */

	x = A("[2001:db8:1:2::1]:1");
	y = A("[2001:db8:1:2:ffff:eeee:dddd:cccc]:2");
	z = A("[2001:db8:1:3::1]:1");
	client_key(&x, a);
	client_key(&y, b);
	CHECK(memcmp(a, b, sizeof(a)) == 0); /* one /64 */
	client_key(&z, b);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK(client_hash("abc", 3) == client_hash("abc", 3));
	CHECK(client_hash("abc", 3) != client_hash("abd", 3));
}

static void test_limit(void)
{
	struct addr a = A("192.0.2.1:1000"), b = A("192.0.2.9:1000");
	int fd[4], other;

	for (int i = 0; i < 3; i++) {
		fd[i] = sock();
		CHECK(clients_admit(fd[i], &a, 3, CLIENTS_PUBLIC) == 1);
	}
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 3);
	fd[3] = sock();
	CHECK(clients_admit(fd[3], &a, 3, CLIENTS_PUBLIC) == 0); /* the fourth */
	other = sock();
	CHECK(clients_admit(other, &b, 3, CLIENTS_PUBLIC) ==
	      1); /* another address is not held up */
	CHECK(clients_admit(fd[3], &a, 0, CLIENTS_PUBLIC) == 1); /* 0: no limit */
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 4);
	close(fd[3]);
	close(other);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 0);
	CHECK(clients_count(&b, CLIENTS_PUBLIC) == 0);
	clients_free();
}

/* A close nobody reports is found when the address reaches its limit; at most
 * every 250 ms, so a flood of refused connects costs no fstat each. */
static void test_close_found(void)
{
	struct addr a = A("[2001:db8::1]:1000"), a2 = A("[2001:db8::2]:1000");
	int fd[3], n;

	fd[0] = sock();
	fd[1] = sock();
	CHECK(clients_admit(fd[0], &a, 2, CLIENTS_PUBLIC) == 1);
	CHECK(clients_admit(fd[1], &a2, 2, CLIENTS_PUBLIC) == 1); /* the same /64 */
	close(fd[0]);
	fd[2] = socket(AF_INET, SOCK_DGRAM, 0); /* fd[0]'s number, not a counted socket */
	CHECK(fd[2] == fd[0]);
	n = sock();
	CHECK(clients_admit(n, &a, 2, CLIENTS_PUBLIC) ==
	      1); /* the limit check found fd[0] closed */
	close(fd[1]);
	fd[1] = sock();
	CHECK(clients_admit(fd[1], &a, 2, CLIENTS_PUBLIC) ==
	      1); /* the same number again: fd[1] was closed */
	close(fd[1]);
	fd[1] = sock();
	close(n);
	n = socket(AF_INET, SOCK_DGRAM, 0); /* taken by something else */
	{
		int x = sock();

		CHECK(clients_admit(x, &a, 2, CLIENTS_PUBLIC) ==
		      0); /* checked less than 250 ms ago */
		sleep_ms(300);
		CHECK(clients_admit(x, &a, 2, CLIENTS_PUBLIC) == 1); /* both others were gone */
		CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);
		close(x);
	}
	close(n);
	close(fd[1]);
	close(fd[2]);
	clients_free();
}

/* The number handed out again by accept: the old connection was closed. */
static void test_number_reused(void)
{
	struct addr a = A("192.0.2.1:1"), b = A("192.0.2.2:1");
	int fd = sock(), again;

	CHECK(clients_admit(fd, &a, 5, CLIENTS_PUBLIC) == 1);
	close(fd);
	again = sock();
	CHECK(again == fd);
	CHECK(clients_admit(again, &b, 5, CLIENTS_PUBLIC) == 1);
	CHECK(clients_count(&b, CLIENTS_PUBLIC) == 1);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 0);
	close(again);
	clients_free();
}

/*
 * A connection handed over by dup() (https.c gives an agent's socket to lws
 * with conn_release_fd, which closes the number accept gave out): it goes on
 * counting under its new number, also once accept hands the old one out.
 */
static void test_moved(void)
{
	struct addr a = A("192.0.2.1:1"), b = A("192.0.2.2:1");
	int fd = sock(), to, again, x, stale, y;

	CHECK(clients_admit(fd, &a, 2, CLIENTS_PUBLIC) == 1);
	to = dup(fd);
	CHECK(to >= 0);
	clients_move(fd, to);
	close(fd);
	again = sock();
	CHECK(again == fd);
	CHECK(clients_admit(again, &b, 2, CLIENTS_PUBLIC) == 1); /* fd's number, another address */
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);           /* still held, under to */
	x = sock();
	CHECK(clients_admit(x, &a, 2, CLIENTS_PUBLIC) == 1);
	y = sock();
	CHECK(clients_admit(y, &a, 2, CLIENTS_PUBLIC) == 0); /* to and x: at the limit */
	close(y);
	/* the moved connection ends when to is closed */
	close(to);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);
	close(x);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 0);

	/* onto a number still counted for a closed connection of another address */
	fd = sock();
	stale = sock();
	CHECK(clients_admit(fd, &a, 5, CLIENTS_PUBLIC) == 1);
	CHECK(clients_admit(stale, &b, 5, CLIENTS_PUBLIC) == 1);
	CHECK(clients_count(&b, CLIENTS_PUBLIC) == 2);
	close(stale);
	to = dup(fd);
	CHECK(to == stale);
	clients_move(fd, to);
	close(fd);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);
	CHECK(clients_count(&b, CLIENTS_PUBLIC) == 1); /* again */
	close(again);
	CHECK(clients_count(&b, CLIENTS_PUBLIC) == 0);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);

	/* not the same socket, or not counted: nothing moves */
	y = sock();
	clients_move(to, y);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);
	x = dup(y);
	clients_move(y, x);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 1);
	close(x);
	close(y);
	close(to);
	CHECK(clients_count(&a, CLIENTS_PUBLIC) == 0);
	CHECK(clients_count(&b, CLIENTS_PUBLIC) == 0);
	clients_free();
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(test_key);
	RUN(test_limit);
	RUN(test_close_found);
	RUN(test_number_reused);
	RUN(test_moved);
	UNIT_END();
}
