/*
 * common/dgbatch.c - datagrams gathered for sendmmsg() (see dgbatch.h).
 */
#include <errno.h>
#include <string.h>

#include "dgbatch.h"

struct dgb_entry *dgb_add(struct dgb *b, void *owner, int fd, const void *p, size_t n)
{
	struct dgb_entry *e;

	if (b->n == DGB_MAX || n > DGB_BYTES - b->used)
		return NULL;
	e = &b->e[b->n++];
	memcpy(b->data + b->used, p, n);
	e->owner = owner;
	e->fd = fd;
	e->iov[0].iov_base = e->hdr;
	e->iov[0].iov_len = 0;
	e->iov[1].iov_base = b->data + b->used;
	e->iov[1].iov_len = n;
	b->used += n;
	memset(&e->m, 0, sizeof(e->m));
	e->m.msg_iov = &e->iov[1];
	e->m.msg_iovlen = 1;
	return e;
}

/* Send k messages of one owner (from e[0]); see dgb_ops for failures.
 * Once sendmmsg() stops short, an error it met is lost (dgbatch.h): the
 * rest go one at a time, each call failing with its own error. */
static void dgb_send_owner(struct dgb *b, struct dgb_entry **e, struct mmsghdr *mm, unsigned k)
{
	unsigned j = 0, most = k;

	while (j < k) {
		unsigned want = k - j < most ? k - j : most;
		int r = sendmmsg(e[0]->fd, mm + j, want, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r > 0) {
			if ((unsigned)r < want)
				most = 1;
			j += (unsigned)r;
			continue;
		}
		if (b->ops->failed(e[j]->owner, r < 0 ? errno : EIO)) {
			j++;
			continue;
		}
		for (; j < k; j++)
			b->ops->unsent(e[j]->owner, e[j]->iov[1].iov_base, e[j]->iov[1].iov_len);
	}
}

void dgb_send(struct dgb *b)
{
	struct mmsghdr mm[DGB_MAX];
	struct dgb_entry *grp[DGB_MAX];
	uint8_t taken[DGB_MAX] = {0};
	unsigned n = b->n;

	/* Empty from here: the entries and their data stay as they are until
	 * the next dgb_add(), which no callback makes on this batch meanwhile
	 * without sending it first. */
	b->n = 0;
	b->used = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned k = 0;

		if (taken[i] || !b->e[i].owner)
			continue;
		for (unsigned j = i; j < n; j++)
			if (!taken[j] && b->e[j].owner == b->e[i].owner) {
				taken[j] = 1;
				grp[k] = &b->e[j];
				memset(&mm[k], 0, sizeof(mm[k]));
				mm[k].msg_hdr = b->e[j].m;
				k++;
			}
		dgb_send_owner(b, grp, mm, k);
	}
}

unsigned dgb_drop(struct dgb *b, const void *owner,
                  void (*keep)(void *owner, const uint8_t *p, size_t n))
{
	unsigned k = 0;

	for (unsigned i = 0; i < b->n; i++)
		if (owner && b->e[i].owner == owner) {
			if (keep)
				keep(b->e[i].owner, b->e[i].iov[1].iov_base,
				     b->e[i].iov[1].iov_len);
			b->e[i].owner = NULL;
			k++;
		}
	return k;
}
