// The pid of the process answering on a control socket, as this process's
// PID namespace numbers it (SO_PEERCRED translates it). A `run` in a
// container reports its own pid as 1: signalling that number from outside
// would reach the host's init, so `fdbroker deploy` signals this one instead.
import { native } from '../native/binding';
import { FdbrokerError } from '../protocol/errors';

export function peerPid(path: string): number {
  const n = native();
  const fd = n.socket(n.constants.AF_UNIX, n.constants.SOCK_SEQPACKET);
  if (fd < 0) throw new FdbrokerError('ERR_FDBROKER_NO_BROKER', `cannot make a socket to reach ${path} (${fd})`);
  try {
    const r = n.connect(fd, { family: 'unix', path });
    if (r < 0) throw new FdbrokerError('ERR_FDBROKER_NO_BROKER', `cannot connect to ${path} (${r})`);
    const cred = n.peercred(fd);
    if (typeof cred === 'number') throw new FdbrokerError('ERR_FDBROKER_NO_BROKER', `cannot read the credentials of the process at ${path} (${cred})`);
    return cred.pid;
  } finally {
    n.close(fd);
  }
}
