// The accept-queue reader: a diagnostic, kept apart from the syscalls in
// fdbroker.cc. Plain C++ (no Node-API): fdbroker.cc turns the rows into JS.
#ifndef FDBROKER_ACCEPT_QUEUE_H_
#define FDBROKER_ACCEPT_QUEUE_H_

#include <stddef.h>
#include <stdint.h>

namespace fdbroker {

// Which kernel interface answered (or failed).
enum AcceptQueueSource { kSourceNone = 0, kSourceTcpInfo = 1, kSourceSockDiag = 2 };

struct AcceptQueueRow {
  int32_t status = 0;  // 0 | -errno
  int32_t queued = 0;
  int32_t backlog = 0;
  int32_t source = kSourceNone;
};

// Fills rows[i] with the accept queue of the listening socket fds[i]: the
// connections waiting for accept() and the backlog in force. A negative fd
// gives -EBADF; a socket that does not listen -EINVAL; another family of
// listener -EOPNOTSUPP. Opens at most one netlink socket for the whole batch
// and closes it before returning; the fds stay the caller's.
void ReadAcceptQueues(const int* fds, size_t count, AcceptQueueRow* rows);

}  // namespace fdbroker

#endif  // FDBROKER_ACCEPT_QUEUE_H_
