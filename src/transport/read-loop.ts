// The one receive loop of every socket fdbroker reads (a Channel's
// SOCK_SEQPACKET connection, exec's sd_notify datagram socket): up to
// `perTurn` messages per readiness event, so one chatty peer cannot starve
// the others, and stop at EAGAIN. What a message or an error means is the
// caller's: each handler returns whether to go on reading.
import { native, type RecvResult } from '../native/binding';
import { EAGAIN } from '../native/errno';

export interface ReadHandlers {
  /** Whether reading may go on (the caller is not closed or paused). */
  open: () => boolean;
  /** A message arrived (its fds are the handler's); return false to stop. */
  message: (r: RecvResult) => boolean;
  /** recvmsg failed with this -errno (not EAGAIN); return false to stop. */
  error: (negErrno: number) => boolean;
}

export function readSome(fd: number, buffer: Buffer, maxFds: number, perTurn: number, h: ReadHandlers): void {
  const n = native();
  for (let i = 0; i < perTurn && h.open(); i++) {
    const r = n.recvmsg(fd, buffer, maxFds);
    if (typeof r === 'number') {
      if (r === EAGAIN) return;
      if (!h.error(r)) return;
      continue;
    }
    if (!h.message(r)) return;
  }
}
