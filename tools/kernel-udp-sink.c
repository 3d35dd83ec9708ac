/* kernel-udp-sink: the kernel's UDP receive path as a benchmark baseline (xdpstack bench rx).
 *
 *   kernel-udp-sink PORT [--v6] [--rcvbuf BYTES]
 *
 * Binds a kernel UDP socket to PORT on every address and drains it with recvmmsg, 64 datagrams a
 * call, counting them. --rcvbuf sets SO_RCVBUF (SO_RCVBUFFORCE: past rmem_max; the kernel doubles
 * it for its bookkeeping), 16 MB by default; the ready line says what the socket got. On SIGUSR1 and on exit (SIGTERM/SIGINT) it prints one JSON line in the form
 * `userstack-echo --sink` prints, so one benchmark reads both:
 *   {"datagrams": N, "bytes": B, "first_ns": T0, "last_ns": T1}                                  */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define BUFSZ 2048

static volatile sig_atomic_t stop_flag, report_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }
static void on_report(int sig) { (void)sig; report_flag = 1; }

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	int v6 = 0, rcvbuf = 16 << 20, bad = argc < 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535;
	for (int i = 2; i < argc && !bad; i++) {
		if (!strcmp(argv[i], "--v6"))
			v6 = 1;
		else if (!strcmp(argv[i], "--rcvbuf") && i + 1 < argc && atoi(argv[i + 1]) > 0)
			rcvbuf = atoi(argv[++i]);
		else
			bad = 1;
	}
	if (bad) {
		fprintf(stderr, "usage: kernel-udp-sink PORT [--v6] [--rcvbuf BYTES]\n");
		return 2;
	}
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	socklen_t len = sizeof(rcvbuf);
	getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len);
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[1])) };
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
	if (fd < 0 || bind(fd, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
			   v6 ? sizeof(a6) : sizeof(a4)) < 0) {
		fprintf(stderr, "kernel-udp-sink: udp/%s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_stop };      /* no SA_RESTART: recvmmsg returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_report;
	sigaction(SIGUSR1, &sa, NULL);

	static char bufs[BATCH][BUFSZ];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ bufs[i], BUFSZ };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	unsigned long long datagrams = 0, bytes = 0, first = 0, last = 0;
	printf("{\"ready\": true, \"rcvbuf\": %d}\n", rcvbuf);
	fflush(stdout);
	while (!stop_flag) {
		if (report_flag) {
			report_flag = 0;
			printf("{\"datagrams\": %llu, \"bytes\": %llu, \"first_ns\": %llu, \"last_ns\": %llu}\n",
			       datagrams, bytes, first, last);
			fflush(stdout);
		}
		int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (n <= 0)
			continue;                                   /* EINTR: a signal to look at */
		last = now_ns();
		if (!first)
			first = last;
		datagrams += n;
		for (int i = 0; i < n; i++)
			bytes += msgs[i].msg_len;
	}
	printf("{\"datagrams\": %llu, \"bytes\": %llu, \"first_ns\": %llu, \"last_ns\": %llu}\n",
	       datagrams, bytes, first, last);
	return 0;
}
