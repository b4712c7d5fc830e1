/*
 * The physical floor for handing N listening sockets to another process:
 * bare socket/connect/recvmsg/close over AF_UNIX SOCK_SEQPACKET with
 * SCM_RIGHTS, no JSON, no checks. Compiled at bench time by bench/handoff.js.
 *
 *   floor N ITERS WARMUP MODE
 *
 * A server process (forked) holds N listening TCP sockets on 127.0.0.1:0 and,
 * per accepted client connection, sends them in chunks of at most 253 fds
 * (SCM_MAX_FD), one SOCK_SEQPACKET message per chunk, then closes the
 * connection.
 *   MODE 0 ("bare"): the server sends as soon as it accepts.
 *   MODE 1 ("rtt2"): the same two request/response round trips fdbroker makes
 *                    (client hello -> server welcome, client adopt -> fds).
 * The client times socket()+connect() -> every fd received -> close(control),
 * closes the received fds (untimed), and repeats. Prints JSON on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PER_MSG 253

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void send_fds(int conn, const int *fds, int count) {
  char payload[64];
  int len = snprintf(payload, sizeof payload, "{\"n\":%d}", count);
  union { char buf[CMSG_SPACE(sizeof(int) * MAX_PER_MSG)]; struct cmsghdr align; } u;
  struct iovec iov = { payload, (size_t)len };
  struct msghdr m = { 0 };
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = CMSG_SPACE(sizeof(int) * count);
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * count);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  if (sendmsg(conn, &m, MSG_NOSIGNAL) < 0) die("sendmsg");
}

static void serve(int ctl, const int *fds, int n, int mode) {
  char buf[65536];
  for (;;) {
    int conn = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    if (mode == 1) {
      if (recv(conn, buf, sizeof buf, 0) <= 0) { close(conn); continue; }       /* hello */
      static const char welcome[] = "{\"type\":\"welcome\"}";
      if (send(conn, welcome, sizeof welcome - 1, MSG_NOSIGNAL) < 0) { close(conn); continue; }
      if (recv(conn, buf, sizeof buf, 0) <= 0) { close(conn); continue; }       /* adopt */
    }
    for (int off = 0; off < n; off += MAX_PER_MSG) {
      int count = n - off < MAX_PER_MSG ? n - off : MAX_PER_MSG;
      send_fds(conn, fds + off, count);
    }
    close(conn);
  }
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: floor N ITERS WARMUP MODE(0 bare, 1 rtt2)\n");
    return 2;
  }
  int n = atoi(argv[1]), iters = atoi(argv[2]), warmup = atoi(argv[3]), mode = atoi(argv[4]);
  if (n < 1 || iters < 1 || warmup < 0) { fprintf(stderr, "floor: bad arguments\n"); return 2; }

  int *fds = calloc((size_t)n, sizeof(int));
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(s, 511) < 0) die("listen");
    fds[i] = s;
  }

  char dir[] = "/tmp/fdbroker-floor-XXXXXX";
  if (!mkdtemp(dir)) die("mkdtemp");
  struct sockaddr_un addr = { 0 };
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s/ctl.sock", dir);
  int ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (ctl < 0) die("socket(AF_UNIX)");
  if (bind(ctl, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind(AF_UNIX)");
  if (listen(ctl, 512) < 0) die("listen(AF_UNIX)");

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    serve(ctl, fds, n, mode);
    _exit(0);
  }
  /* The client holds none of the server's sockets. */
  close(ctl);
  for (int i = 0; i < n; i++) close(fds[i]);

  uint64_t *samples = calloc((size_t)iters, sizeof(uint64_t));
  int *got = calloc((size_t)n, sizeof(int));
  static char payload[65536];
  union { char buf[CMSG_SPACE(sizeof(int) * MAX_PER_MSG)]; struct cmsghdr align; } u;
  for (int it = 0; it < warmup + iters; it++) {
    uint64_t t0 = now_ns();
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket(client)");
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    if (mode == 1) {
      static const char hello[] = "{\"type\":\"hello\",\"versions\":[1]}";
      static const char adopt[] = "{\"type\":\"adopt\",\"id\":1}";
      if (send(s, hello, sizeof hello - 1, MSG_NOSIGNAL) < 0) die("send(hello)");
      if (recv(s, payload, sizeof payload, 0) <= 0) die("recv(welcome)");
      if (send(s, adopt, sizeof adopt - 1, MSG_NOSIGNAL) < 0) die("send(adopt)");
    }
    int have = 0;
    while (have < n) {
      struct iovec iov = { payload, sizeof payload };
      struct msghdr m = { 0 };
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = u.buf;
      m.msg_controllen = sizeof u.buf;
      ssize_t r = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
      if (r <= 0) die("recvmsg");
      if (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) { errno = EMSGSIZE; die("recvmsg truncated"); }
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(got + have, CMSG_DATA(c), sizeof(int) * (size_t)k);
        have += k;
      }
    }
    close(s);
    uint64_t t1 = now_ns();
    for (int i = 0; i < have; i++) close(got[i]);
    if (it >= warmup) samples[it - warmup] = t1 - t0;
  }

  kill(child, SIGTERM);
  waitpid(child, NULL, 0);
  unlink(addr.sun_path);
  rmdir(dir);

  printf("{\"n\":%d,\"mode\":\"%s\",\"iters\":%d,\"samples_ns\":[", n, mode == 1 ? "rtt2" : "bare", iters);
  for (int i = 0; i < iters; i++) printf("%s%llu", i ? "," : "", (unsigned long long)samples[i]);
  printf("]}\n");
  return 0;
}
