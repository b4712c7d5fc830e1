// fdbroker accept-queue reader: how many connections wait in a listener's
// queue and the backlog in force, read from the kernel rather than remembered.
// A diagnostic (stall detection, status, metrics), kept out of fdbroker.cc,
// whose business is the syscalls the handover needs. No policy here either.
//
// tcp: getsockopt(TCP_INFO) on a listening socket reports the accept queue in
// tcpi_unacked and the backlog in tcpi_sacked (tcp_get_info(), TCP_LISTEN).
// unix (stream and seqpacket): sock_diag. An exact unix_diag request (no
// NLM_F_DUMP) names the socket by inode; UNIX_DIAG_RQLEN then carries, for a
// listener, the queued connections (rqueue) and sk_max_ack_backlog (wqueue).

#include "accept_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fdbroker {
namespace {

// Owns the NETLINK_SOCK_DIAG socket of one ReadAcceptQueues call, opened on first
// need: a batch of tcp listeners never opens one, and it never outlives the call.
class DiagSocket {
 public:
  // close() is not retried on EINTR (see CloseQuietly in fdbroker.cc).
  ~DiagSocket() {
    if (fd_ >= 0) close(fd_);
  }
  // fd | -errno.
  int Get() {
    if (fd_ < 0) {
      fd_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
      if (fd_ < 0) return -errno;
    }
    return fd_;
  }

 private:
  int fd_ = -1;
};

// Queries the AF_UNIX socket with inode `ino`: 0 | -errno.
int UnixDiagQueue(DiagSocket* diag, uint32_t ino, uint32_t seq, AcceptQueueRow* row) {
  int nl = diag->Get();
  if (nl < 0) return nl;
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg;
  memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.nlh.nlmsg_seq = seq;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0U;
  msg.req.udiag_ino = ino;
  msg.req.udiag_show = UDIAG_SHOW_RQLEN;
  // "No cookie": match by inode alone (sock_diag_check_cookie()).
  msg.req.udiag_cookie[0] = ~0U;
  msg.req.udiag_cookie[1] = ~0U;
  sockaddr_nl kernel;
  memset(&kernel, 0, sizeof(kernel));
  kernel.nl_family = AF_NETLINK;
  ssize_t n;
  do {
    n = sendto(nl, &msg, sizeof(msg), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  // The kernel answers inside sendto(), so the reply is already queued: a
  // non-blocking read never waits. Replies to earlier requests of this call
  // that were left unread (none are expected) are skipped by sequence number.
  alignas(nlmsghdr) char buf[8192];
  for (;;) {
    do {
      n = recv(nl, buf, sizeof(buf), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return e->error < 0 ? e->error : -EPROTO;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -EPROTO;
      auto* udm = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
      int alen = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(sizeof(*udm)));
      for (auto* a = reinterpret_cast<rtattr*>(udm + 1); alen > 0 && RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= sizeof(unix_diag_rqlen)) {
          unix_diag_rqlen q;
          memcpy(&q, RTA_DATA(a), sizeof(q));
          row->queued = static_cast<int32_t>(q.udiag_rqueue);
          row->backlog = static_cast<int32_t>(q.udiag_wqueue);
          return 0;
        }
      }
      return -EPROTO;  // answered without the queue lengths asked for
    }
  }
}

void AcceptQueueOf(int fd, DiagSocket* diag, uint32_t seq, AcceptQueueRow* row) {
  int type = 0, listening = 0, domain = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) {
    row->status = -errno;
    return;
  }
  // Not listening: EINVAL, as accept(2) answers for such a socket.
  if (!listening) {
    row->status = -EINVAL;
    return;
  }
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
    row->status = -errno;
    return;
  }
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
    row->status = -errno;
    return;
  }
  if ((domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM) {
    row->source = kSourceTcpInfo;
    tcp_info ti;
    memset(&ti, 0, sizeof(ti));
    len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
      row->status = -errno;
      return;
    }
    row->queued = static_cast<int32_t>(ti.tcpi_unacked);
    row->backlog = static_cast<int32_t>(ti.tcpi_sacked);
    return;
  }
  if (domain == AF_UNIX) {
    row->source = kSourceSockDiag;
    // statx, not fstat: glibc >= 2.33 exports fstat at a version newer than
    // the prebuilds may need (GLIBC_2.28, which statx has).
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    if (statx(fd, "", AT_EMPTY_PATH, STATX_INO, &stx) < 0) {
      row->status = -errno;
      return;
    }
    row->status = UnixDiagQueue(diag, static_cast<uint32_t>(stx.stx_ino), seq, row);
    return;
  }
  row->status = -EOPNOTSUPP;  // a listening socket of another family (vsock, ...)
}

}  // namespace

void ReadAcceptQueues(const int* fds, size_t count, AcceptQueueRow* rows) {
  DiagSocket diag;
  for (size_t i = 0; i < count; i++) {
    rows[i] = AcceptQueueRow();
    if (fds[i] < 0) {
      rows[i].status = -EBADF;
    } else {
      AcceptQueueOf(fds[i], &diag, static_cast<uint32_t>(i + 1), &rows[i]);
    }
  }
}

}  // namespace fdbroker
