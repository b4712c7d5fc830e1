// fdbroker native layer: the Unix-socket syscalls that Node cannot make, fd
// ownership until an fd reaches JS, and readiness; the one diagnostic reader
// (accept queues) is in accept_queue.cc. No policy lives here: no paths are
// chosen, no retries beyond EINTR, no timeouts, no JSON, no logging. Every call
// returns a result or a negative errno; TypeScript turns that into a
// Node-shaped error.
//
// Every socket this file creates is SOCK_NONBLOCK | SOCK_CLOEXEC, every fd it
// receives is MSG_CMSG_CLOEXEC, and every send is MSG_NOSIGNAL. Readiness comes
// from a uv_poll_t on the calling environment's own loop (never the default
// loop), so the calls work in worker threads and never block an event loop.

#include <napi.h>
#include <uv.h>

#include "accept_queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every architecture (Linux >= 5.3)
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438  // Linux >= 5.6
#endif

#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83  // Linux >= 6.16; older kernels answer ENOPROTOOPT.
#endif

namespace {

// The kernel's per-message limit on SCM_RIGHTS (SCM_MAX_FD in net/scm.h).
constexpr int kMaxFdsPerMessage = 253;

// close() is never retried on EINTR: on Linux the fd is released even when
// close() reports EINTR, and a retry could close an fd another thread just got.
void CloseQuietly(int fd) {
  if (fd >= 0) close(fd);
}

// Owns fds received from the kernel until they are handed to JavaScript.
class FdList {
 public:
  ~FdList() {
    for (int fd : fds_) CloseQuietly(fd);
  }
  void Add(int fd) { fds_.push_back(fd); }
  size_t Size() const { return fds_.size(); }
  // Hands ownership of every fd to the caller.
  std::vector<int> Release() {
    std::vector<int> out;
    out.swap(fds_);
    return out;
  }

 private:
  std::vector<int> fds_;
};

// A valid fd is an integral number from 0 to INT_MAX; anything else is -1.
// (Int32Value() alone would turn NaN or 2**32 into fd 0.)
int FdValue(const Napi::Value& v) {
  if (!v.IsNumber()) return -1;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int>(d))) return -1;
  return static_cast<int>(d);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i) return -1;
  return FdValue(info[i]);
}

Napi::Value Errno(Napi::Env env, int err) {
  return Napi::Number::New(env, -err);
}

bool CheckFd(const Napi::CallbackInfo& info, size_t i, int* fd) {
  *fd = ArgFd(info, i);
  if (*fd < 0) {
    Napi::TypeError::New(info.Env(), "fd must be a non-negative integer")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// socket(domain, type) -> fd | -errno. Always non-blocking and close-on-exec.
Napi::Value Socket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "socket(domain, type)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int domain = info[0].As<Napi::Number>().Int32Value();
  int type = info[1].As<Napi::Number>().Int32Value();
  int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(env, errno);
  return Napi::Number::New(env, fd);
}

// Builds a sockaddr from { family: 'unix', path } or
// { family: 'inet' | 'inet6', address, port }. Returns 0 or -errno.
int BuildAddr(const Napi::Object& spec, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  std::string family = spec.Get("family").As<Napi::String>().Utf8Value();
  if (family == "unix") {
    std::string path = spec.Get("path").As<Napi::String>().Utf8Value();
    auto* sun = reinterpret_cast<sockaddr_un*>(ss);
    // A leading NUL is the abstract namespace: the name is exactly the bytes
    // given (its length is the address length), with no terminating NUL.
    bool abstract = !path.empty() && path[0] == '\0';
    if (path.empty() || path.size() > sizeof(sun->sun_path) ||
        (!abstract && path.size() == sizeof(sun->sun_path))) return -ENAMETOOLONG;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path.data(), path.size());
    *len = offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1);
    return 0;
  }
  std::string address = spec.Get("address").As<Napi::String>().Utf8Value();
  int port = spec.Get("port").As<Napi::Number>().Int32Value();
  if (port < 0 || port > 65535) return -EINVAL;
  if (family == "inet") {
    auto* sin = reinterpret_cast<sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, address.c_str(), &sin->sin_addr) != 1) return -EINVAL;
    *len = sizeof(*sin);
    return 0;
  }
  if (family == "inet6") {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, address.c_str(), &sin6->sin6_addr) != 1) return -EINVAL;
    *len = sizeof(*sin6);
    return 0;
  }
  return -EAFNOSUPPORT;
}

bool CheckAddrArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsObject()) {
    Napi::TypeError::New(info.Env(), "address must be an object")
        .ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = info[i].As<Napi::Object>();
  if (!o.Get("family").IsString()) {
    Napi::TypeError::New(info.Env(), "address.family must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  std::string family = o.Get("family").As<Napi::String>().Utf8Value();
  bool ok = family == "unix" ? o.Get("path").IsString()
                             : o.Get("address").IsString() && o.Get("port").IsNumber();
  if (!ok) {
    Napi::TypeError::New(info.Env(), "address needs path, or address and port")
        .ThrowAsJavaScriptException();
  }
  return ok;
}

Napi::Value Bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd) || !CheckAddrArg(info, 1)) return env.Undefined();
  sockaddr_storage ss;
  socklen_t len = 0;
  int r = BuildAddr(info[1].As<Napi::Object>(), &ss, &len);
  if (r < 0) return Napi::Number::New(env, r);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

// connect() on a non-blocking AF_UNIX socket either completes at once or
// fails; EAGAIN means the listener's queue is full and the caller may retry.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd) || !CheckAddrArg(info, 1)) return env.Undefined();
  sockaddr_storage ss;
  socklen_t len = 0;
  int r = BuildAddr(info[1].As<Napi::Object>(), &ss, &len);
  if (r < 0) return Napi::Number::New(env, r);
  do {
    r = connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int backlog = info[1].As<Napi::Number>().Int32Value();
  if (listen(fd, backlog) < 0) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

// accept4() one connection: fd | -errno (EAGAIN when none is pending).
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int c;
  do {
    c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (c < 0 && errno == EINTR);
  if (c < 0) return Errno(env, errno);
  return Napi::Number::New(env, c);
}

// acceptBatch(fd, max) -> Int32Array of 4 * k + 1 ints: for each of the k
// connections accepted (at most max), [fd, pid, uid, gid] from SO_PEERCRED
// (pid is -errno and uid, gid -1 when it could not be read); then 0 when max
// was reached, or the -errno that ended the batch (-EAGAIN: none pending).
// One call for many connections: a flood of connects costs one crossing per
// batch, not four per connection. The fds are the caller's.
Napi::Value AcceptBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "max must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int max = info[1].As<Napi::Number>().Int32Value();
  if (max < 1) max = 1;
  if (max > 4096) max = 4096;
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(max) * 4 + 1);
  int end = 0;
  for (int i = 0; i < max; i++) {
    int c;
    do {
      c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (c < 0 && errno == EINTR);
    if (c < 0) {
      end = -errno;
      break;
    }
    ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
      int err = errno;
      out.insert(out.end(), {c, -err, -1, -1});
    } else {
      out.insert(out.end(), {c, static_cast<int32_t>(cred.pid), static_cast<int32_t>(cred.uid), static_cast<int32_t>(cred.gid)});
    }
  }
  out.push_back(end);
  Napi::Int32Array arr = Napi::Int32Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) arr[i] = out[i];
  return arr;
}

// replyAndClose(fds, payload): sends payload to each fd (one message, no
// fds, MSG_DONTWAIT | MSG_NOSIGNAL, best effort: errors are ignored), then
// closes it. For connections refused at accept; the fds are consumed.
Napi::Value ReplyAndClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "replyAndClose(fds: Int32Array, payload: Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Int32Array fds = info[0].As<Napi::Int32Array>();
  Napi::Buffer<char> payload = info[1].As<Napi::Buffer<char>>();
  for (size_t i = 0; i < fds.ElementLength(); i++) {
    int c = fds[i];
    if (c < 0) continue;
    ssize_t r;
    do {
      r = send(c, payload.Data(), payload.Length(), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    close(c);
  }
  return env.Undefined();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  if (close(fd) < 0 && errno != EINTR) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

Napi::Value SetSockOptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int level = info[1].As<Napi::Number>().Int32Value();
  int name = info[2].As<Napi::Number>().Int32Value();
  int value = info[3].As<Napi::Number>().Int32Value();
  if (setsockopt(fd, level, name, &value, sizeof(value)) < 0) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

// getsockopt(fd, level, name) for integer options. The result is returned in
// an object so that negative option values cannot be mistaken for errors.
Napi::Value GetSockOptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int level = info[1].As<Napi::Number>().Int32Value();
  int name = info[2].As<Napi::Number>().Int32Value();
  int value = 0;
  socklen_t len = sizeof(value);
  if (getsockopt(fd, level, name, &value, &len) < 0) return Errno(env, errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("value", Napi::Number::New(env, value));
  return out;
}

Napi::Value SockName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return Errno(env, errno);
  Napi::Object out = Napi::Object::New(env);
  char buf[INET6_ADDRSTRLEN];
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    out.Set("family", "inet");
    out.Set("address", buf);
    out.Set("port", ntohs(sin->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    out.Set("family", "inet6");
    out.Set("address", buf);
    out.Set("port", ntohs(sin6->sin6_port));
  } else if (ss.ss_family == AF_UNIX) {
    auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    out.Set("family", "unix");
    if (n > 0 && sun->sun_path[0] == '\0') {
      out.Set("path", std::string(sun->sun_path, n));  // abstract: keep the leading NUL
    } else {
      out.Set("path", std::string(sun->sun_path, strnlen(sun->sun_path, n)));
    }
  } else {
    out.Set("family", "other");
  }
  return out;
}

// inspect(fds) -> Int32Array of 5 ints per fd: [0 | -errno, SO_TYPE,
// address family, SO_ACCEPTCONN, port (inet) or 0]. One call for many fds:
// adopting 1,024 listeners checks 1,024 fds.
Napi::Value Inspect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, "inspect(fds[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  uint32_t n = arr.Length();
  Napi::Int32Array out = Napi::Int32Array::New(env, static_cast<size_t>(n) * 5);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = arr[i];
    int fd = FdValue(v);
    int32_t* row = out.Data() + static_cast<size_t>(i) * 5;
    row[0] = row[1] = row[2] = row[3] = row[4] = 0;
    if (fd < 0) {
      row[0] = -EBADF;
      continue;
    }
    int type = 0, listening = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
      row[0] = -errno;
      continue;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) {
      row[0] = -errno;
      continue;
    }
    sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &slen) < 0) {
      row[0] = -errno;
      continue;
    }
    row[1] = type;
    row[2] = ss.ss_family;
    row[3] = listening;
    if (ss.ss_family == AF_INET) row[4] = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) row[4] = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  return out;
}

// SO_PEERCRED of a connected AF_UNIX socket: { pid, uid, gid } | -errno.
Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return Errno(env, errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

// Sets or clears FD_CLOEXEC: 0 | -errno.
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  bool on = info[1].ToBoolean().Value();
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return Errno(env, errno);
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (fcntl(fd, F_SETFD, flags) < 0) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

// dup3-free duplicate with FD_CLOEXEC set: fd | -errno.
Napi::Value Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) return Errno(env, errno);
  return Napi::Number::New(env, d);
}

// flock(fd, operation) -> 0 | -errno. The lock belongs to the open file
// description and is released by the kernel when the last fd to it closes,
// including when the process dies.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int op = info[1].As<Napi::Number>().Int32Value();
  int r;
  do {
    r = flock(fd, op);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Errno(env, errno);
  return Napi::Number::New(env, 0);
}

// ioctl(SIOCOUTQ): bytes this socket sent that its peer has not read yet
// (for AF_UNIX, the memory still held by unread messages) | -errno.
Napi::Value OutQ(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  int n = 0;
  if (ioctl(fd, SIOCOUTQ, &n) < 0) return Errno(env, errno);
  return Napi::Number::New(env, n);
}

// acceptQueues(fds) -> Int32Array of 4 ints per fd: [0 | -errno, queued,
// backlog, source (0 none, 1 TCP_INFO, 2 sock_diag)]. The reading itself is
// in accept_queue.cc; this only converts. Not an fd (-1, NaN): EBADF in place.
Napi::Value AcceptQueues(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, "acceptQueues(fds[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  uint32_t n = arr.Length();
  std::vector<int> fds(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = arr[i];
    fds[i] = FdValue(v);
  }
  std::vector<fdbroker::AcceptQueueRow> rows(n);
  fdbroker::ReadAcceptQueues(fds.data(), n, rows.data());
  Napi::Int32Array out = Napi::Int32Array::New(env, static_cast<size_t>(n) * 4);
  for (uint32_t i = 0; i < n; i++) {
    int32_t* o = out.Data() + static_cast<size_t>(i) * 4;
    o[0] = rows[i].status;
    o[1] = rows[i].queued;
    o[2] = rows[i].backlog;
    o[3] = rows[i].source;
  }
  return out;
}

// sendmsg(fd, payload, fds) -> bytes sent | -errno. At most 253 fds per
// message, refused before the syscall. The fds stay owned by the caller: the
// kernel gives the peer duplicates.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsBuffer() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "sendmsg(fd, buffer, fds[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> payload = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Array arr = info[2].As<Napi::Array>();
  uint32_t nfds = arr.Length();
  if (nfds > kMaxFdsPerMessage) {
    Napi::RangeError::New(env, "at most 253 fds fit in one message (SCM_MAX_FD)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<int> fds(nfds);
  for (uint32_t i = 0; i < nfds; i++) {
    Napi::Value v = arr[i];
    fds[i] = FdValue(v);
    if (fds[i] < 0) {
      Napi::TypeError::New(env, "fds must be non-negative integers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }

  iovec iov;
  iov.iov_base = payload.Data();
  iov.iov_len = payload.Length();
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (nfds > 0) {
    control.assign(CMSG_SPACE(sizeof(int) * nfds), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno(env, errno);
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvmsg(fd, buffer, maxFds) -> { bytes, fds, truncated } | -errno.
// Received fds are close-on-exec (MSG_CMSG_CLOEXEC). Every control message is
// walked; anything but SCM_RIGHTS is reported as `foreign`. When the kernel
// truncated the payload (MSG_TRUNC) or the control data (MSG_CTRUNC), every fd
// that did arrive is closed here and `truncated` is true: a caller can never
// receive, or leak, part of a message's fds.
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!CheckFd(info, 0, &fd)) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsBuffer() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "recvmsg(fd, buffer, maxFds)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  double maxFdsD = info[2].As<Napi::Number>().DoubleValue();
  int maxFds = (maxFdsD >= 0 && maxFdsD <= kMaxFdsPerMessage && maxFdsD == static_cast<int>(maxFdsD)) ? static_cast<int>(maxFdsD) : -1;
  if (maxFds < 0 || maxFds > kMaxFdsPerMessage) {
    Napi::RangeError::New(env, "maxFds must be between 0 and 253").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  iovec iov;
  iov.iov_base = buf.Data();
  iov.iov_len = buf.Length();
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Always leave room for at least one fd so that fds sent to a receiver that
  // expects none are still seen (and closed) rather than silently discarded.
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (maxFds > 0 ? maxFds : 1)), 0);
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();

  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno(env, errno);

  FdList received;
  bool foreign = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(c);
      for (size_t i = 0; i < count; i++) {
        int rfd;
        memcpy(&rfd, data + i * sizeof(int), sizeof(int));
        received.Add(rfd);
      }
    } else {
      foreign = true;
    }
  }
  // CMSG_SPACE rounds up, so the kernel may fit one fd more than maxFds
  // without MSG_CTRUNC: the limit is enforced here, exactly.
  bool ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0 || received.Size() > static_cast<size_t>(maxFds);
  bool truncated = (msg.msg_flags & MSG_TRUNC) != 0 || ctrunc;
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  out.Set("truncated", Napi::Boolean::New(env, truncated));
  out.Set("ctrunc", Napi::Boolean::New(env, ctrunc));
  out.Set("foreign", Napi::Boolean::New(env, foreign));
  out.Set("closed", Napi::Number::New(env, truncated ? received.Size() : 0));
  Napi::Array fds = Napi::Array::New(env);
  if (!truncated) {
    std::vector<int> owned = received.Release();
    for (uint32_t i = 0; i < owned.size(); i++) fds.Set(i, Napi::Number::New(env, owned[i]));
  }
  // When truncated, `received` closes every fd as it goes out of scope.
  out.Set("fds", fds);
  return out;
}

// Poller: readiness of one fd from a uv_poll_t on this environment's loop.
// new Poller(fd, callback(status, events)); start(events); stop(); ref();
// unref(); close(). The callback runs on the loop's thread with a negative
// errno as `status` on error.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {InstanceMethod("start", &Poller::Start),
                        InstanceMethod("stop", &Poller::Stop),
                        InstanceMethod("ref", &Poller::RefHandle),
                        InstanceMethod("unref", &Poller::UnrefHandle),
                        InstanceMethod("close", &Poller::Close)});
  }

  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    int fd = ArgFd(info, 0);
    if (fd < 0 || info.Length() < 2 || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "new Poller(fd, callback)").ThrowAsJavaScriptException();
      return;
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "fdbroker.Poller");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "no event loop").ThrowAsJavaScriptException();
      return;
    }
    handle_ = new PollHandle;
    int r = uv_poll_init(loop, &handle_->poll, fd);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error e = Napi::Error::New(env, uv_strerror(r));
      e.Set("code", Napi::String::New(env, uv_err_name(r)));
      e.Set("errno", Napi::Number::New(env, r));
      e.Set("syscall", Napi::String::New(env, "uv_poll_init"));
      e.ThrowAsJavaScriptException();
      return;
    }
    handle_->poll.data = this;
    // An async hook, so that the environment's teardown waits for uv_close's
    // callback: a worker's loop runs its closing handles after the addons it
    // loaded may have been unloaded, and that callback is code in this addon.
    if (napi_add_async_cleanup_hook(env, &Poller::OnAsyncCleanup, handle_, &handle_->hook) != napi_ok) {
      handle_->hook = nullptr;
    }
  }

  ~Poller() override { CloseHandle(); }

 private:
  // The uv handle outlives the Poller until uv_close calls back; the cleanup
  // hook stays registered until then.
  struct PollHandle {
    uv_poll_t poll;  // first member: the uv_handle_t* is the PollHandle*
    napi_async_cleanup_hook_handle hook = nullptr;
  };

  static void OnAsyncCleanup(napi_async_cleanup_hook_handle, void* arg) {
    auto* self = static_cast<Poller*>(static_cast<PollHandle*>(arg)->poll.data);
    if (self != nullptr) self->CloseHandle();  // else uv_close is already under way
  }

  static void OnClosed(uv_handle_t* h) {
    auto* ph = reinterpret_cast<PollHandle*>(h);
    if (ph->hook != nullptr) napi_remove_async_cleanup_hook(ph->hook);
    delete ph;
  }

  void CloseHandle() {
    if (handle_ == nullptr) return;
    handle_->poll.data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), &Poller::OnClosed);
    handle_ = nullptr;
    // The pin (a strong reference) is only dropped from JS calls: this may
    // run during GC finalization or environment teardown.
  }

  // Runs from libuv with no JS frame below it, so the N-API C calls are used
  // directly: node-addon-api's MakeCallback() throws on failure, which here
  // either leaves the exception pending in the env (to be thrown by the next,
  // unrelated native call) or, while a worker's environment is torn down and
  // JS cannot run, aborts the process (napi_throw fails: fatal error).
  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* self = static_cast<Poller*>(h->data);
    if (self == nullptr) return;
    napi_env env = self->Env();
    Napi::HandleScope scope(env);
    napi_value argv[2] = {Napi::Number::New(env, status), Napi::Number::New(env, events)};
    napi_value global = nullptr;
    napi_value result = nullptr;
    if (napi_get_global(env, &global) != napi_ok) return;
    napi_make_callback(env, *self->context_, global, self->callback_.Value(), 2, argv, &result);
    // An exception the callback threw is reported now as uncaught, as Node
    // does for its own handles. A failure with no exception means JS cannot
    // run (the environment is going away): there is no one to tell.
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value err = nullptr;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr) return Napi::Number::New(env, UV_EBADF);
    int events = info[0].As<Napi::Number>().Int32Value() & (UV_READABLE | UV_WRITABLE);
    int r = uv_poll_start(&handle_->poll, events, &Poller::OnPoll);
    // While polling, the JS object must not be collected out from under libuv.
    if (r == 0 && !pinned_) {
      Ref();
      pinned_ = true;
    }
    return Napi::Number::New(env, r);
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr) return Napi::Number::New(env, 0);
    int r = uv_poll_stop(&handle_->poll);
    Unpin();
    return Napi::Number::New(env, r);
  }

  Napi::Value RefHandle(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    return info.Env().Undefined();
  }

  Napi::Value UnrefHandle(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool was_pinned = pinned_;
    pinned_ = false;
    CloseHandle();
    // The callback's closure usually holds whatever holds this Poller: a
    // persistent reference to it would keep that cycle alive for ever.
    callback_.Reset();
    if (was_pinned) Unref();
    return info.Env().Undefined();
  }

  void Unpin() {
    if (pinned_) {
      pinned_ = false;
      Unref();
    }
  }

  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
  PollHandle* handle_ = nullptr;
  bool pinned_ = false;
};

// waitpid(pid, WNOHANG), for a process that is PID 1 (or a subreaper) to reap
// the orphans reparented to it. Only ever called with a pid the caller knows
// is not one of libuv's own children (libuv reaps those by pid). Returns 0
// while it runs, { pid, code, signal } once reaped (code -1 when a signal
// ended it), or -errno (-ECHILD: not a child of this process).
Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "waitpid(pid): pid must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  pid_t pid = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  if (pid <= 0) return Errno(env, EINVAL);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Errno(env, errno);
  if (r == 0) return Napi::Number::New(env, 0);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, r));
  out.Set("code", Napi::Number::New(env, WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  out.Set("signal", Napi::Number::New(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  return out;
}

// pidfd_open(pid, 0) -> pidfd | -errno. The pidfd is close-on-exec and refers
// to that process for as long as it is open, even once its pid is reused.
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "pidfdOpen(pid): pid must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pid = info[0].As<Napi::Number>().Int32Value();
  if (pid <= 0) return Errno(env, EINVAL);
  long r = syscall(SYS_pidfd_open, pid, 0);
  if (r < 0) return Errno(env, errno);
  return Napi::Number::New(env, static_cast<double>(r));
}

// pidfd_getfd(pidfd, targetfd, 0) -> fd | -errno: a duplicate, in this
// process, of the target's fd (the same open file description), close-on-exec.
// The kernel allows it only as ptrace would (same uid and a dumpable target,
// or CAP_SYS_PTRACE): -EPERM otherwise; -EBADF when the target has no such fd.
Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pidfd;
  if (!CheckFd(info, 0, &pidfd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "pidfdGetfd(pidfd, fd): fd must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int target = info[1].As<Napi::Number>().Int32Value();
  if (target < 0) return Errno(env, EBADF);
  long r = syscall(SYS_pidfd_getfd, pidfd, target, 0);
  if (r < 0) return Errno(env, errno);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("socket", Napi::Function::New(env, Socket));
  exports.Set("bind", Napi::Function::New(env, Bind));
  exports.Set("connect", Napi::Function::New(env, Connect));
  exports.Set("acceptBatch", Napi::Function::New(env, AcceptBatch));
  exports.Set("replyAndClose", Napi::Function::New(env, ReplyAndClose));
  exports.Set("listen", Napi::Function::New(env, Listen));
  exports.Set("accept", Napi::Function::New(env, Accept));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("setsockoptInt", Napi::Function::New(env, SetSockOptInt));
  exports.Set("getsockoptInt", Napi::Function::New(env, GetSockOptInt));
  exports.Set("sockname", Napi::Function::New(env, SockName));
  exports.Set("peercred", Napi::Function::New(env, PeerCred));
  exports.Set("inspect", Napi::Function::New(env, Inspect));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec));
  exports.Set("dup", Napi::Function::New(env, Dup));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("outq", Napi::Function::New(env, OutQ));
  exports.Set("acceptQueues", Napi::Function::New(env, AcceptQueues));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg));
  exports.Set("waitpid", Napi::Function::New(env, WaitPid));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd));
  exports.Set("Poller", Poller::Init(env));

  Napi::Object c = Napi::Object::New(env);
  c.Set("AF_UNIX", Napi::Number::New(env, static_cast<double>(AF_UNIX)));
  c.Set("AF_INET", Napi::Number::New(env, static_cast<double>(AF_INET)));
  c.Set("AF_INET6", Napi::Number::New(env, static_cast<double>(AF_INET6)));
  c.Set("SOCK_STREAM", Napi::Number::New(env, static_cast<double>(SOCK_STREAM)));
  c.Set("SOCK_DGRAM", Napi::Number::New(env, static_cast<double>(SOCK_DGRAM)));
  c.Set("SOCK_SEQPACKET", Napi::Number::New(env, static_cast<double>(SOCK_SEQPACKET)));
  c.Set("SOL_SOCKET", Napi::Number::New(env, static_cast<double>(SOL_SOCKET)));
  c.Set("SO_TYPE", Napi::Number::New(env, static_cast<double>(SO_TYPE)));
  c.Set("SO_DOMAIN", Napi::Number::New(env, static_cast<double>(SO_DOMAIN)));
  c.Set("SO_ACCEPTCONN", Napi::Number::New(env, static_cast<double>(SO_ACCEPTCONN)));
  c.Set("SO_REUSEADDR", Napi::Number::New(env, static_cast<double>(SO_REUSEADDR)));
  c.Set("SO_REUSEPORT", Napi::Number::New(env, static_cast<double>(SO_REUSEPORT)));
  c.Set("SO_SNDBUF", Napi::Number::New(env, static_cast<double>(SO_SNDBUF)));
  c.Set("SO_RCVBUF", Napi::Number::New(env, static_cast<double>(SO_RCVBUF)));
  c.Set("SO_PASSRIGHTS", Napi::Number::New(env, static_cast<double>(SO_PASSRIGHTS)));
  c.Set("LOCK_EX", Napi::Number::New(env, static_cast<double>(LOCK_EX)));
  c.Set("LOCK_NB", Napi::Number::New(env, static_cast<double>(LOCK_NB)));
  c.Set("SCM_MAX_FD", Napi::Number::New(env, static_cast<double>(kMaxFdsPerMessage)));
  c.Set("UV_READABLE", Napi::Number::New(env, static_cast<double>(static_cast<int>(UV_READABLE))));
  c.Set("UV_WRITABLE", Napi::Number::New(env, static_cast<double>(static_cast<int>(UV_WRITABLE))));
  c.Set("UV_DISCONNECT", Napi::Number::New(env, static_cast<double>(static_cast<int>(UV_DISCONNECT))));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(fdbroker, Init)
