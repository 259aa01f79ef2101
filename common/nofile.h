/*
 * common/nofile.h - the limit on open files, raised at start.
 *
 * Every client, tunnel stream and service connection is a descriptor, and a
 * shell's default soft limit (1024) caps a proxy at a few hundred clients
 * although the hard limit allows far more.  Like HAProxy, both processes
 * raise the soft limit towards the hard one at start, before the event loop
 * sizes its descriptor tables from it (libwebsockets allocates one pointer
 * per possible descriptor, hence the ceiling).
 */
#ifndef RELAIS_COMMON_NOFILE_H
#define RELAIS_COMMON_NOFILE_H

/* Not raised past this: 64 Ki descriptors cost lws about 1 MiB of tables. */
#define NOFILE_CEILING 65536

/**
 * Raise RLIMIT_NOFILE's soft limit to min(hard, NOFILE_CEILING) when lower;
 * never lowers it.  Returns the soft limit now in force.
 */
long nofile_raise(void);

#endif
