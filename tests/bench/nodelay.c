/*
 * LD_PRELOAD shim for tests/bench/run.sh ("pf+nd"): sets TCP_NODELAY on
 * every socket the process accepts, which prefetchd does not do. Measures
 * what the Nagle / delayed-ACK stall costs on keep-alive connections with
 * responses larger than one segment, without touching the daemon.
 *
 *   cc -O2 -shared -fPIC -o nodelay.so nodelay.c -ldl
 *   LD_PRELOAD=./nodelay.so prefetchd ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int nodelay(int fd)
{
	int one = 1;

	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				 sizeof(one));
	return fd;
}

int accept(int s, struct sockaddr *addr, socklen_t *len)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "accept");
	return nodelay(real(s, addr, len));
}

int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "accept4");
	return nodelay(real(s, addr, len, flags));
}
