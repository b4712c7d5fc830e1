// Socket options of a held listener changed in place by a reload: the same
// socket (same port, same accept queue, the copies every holder has) takes
// the new TCP_NODELAY with setsockopt(2) and the new backlog with a second
// listen(2), which Linux allows on a listening socket. Connections accepted
// before keep the TCP_NODELAY they had; those accepted after inherit the new one.
import { systemError } from '../protocol/errors';
import { native } from '../native/binding';
import { IPPROTO_TCP, TCP_NODELAY } from '../native/tcp';
import type { ListenerSpec } from './spec';

/** Applies `spec`'s nodelay and backlog to the listening socket `fd`; throws a system error if the kernel refuses. */
export function retuneListener(fd: number, spec: ListenerSpec, defaultBacklog: number): void {
  const n = native();
  if (spec.kind === 'udp') return;
  if (spec.kind === 'tcp') {
    const r = n.setsockoptInt(fd, IPPROTO_TCP, TCP_NODELAY, spec.nodelay === true ? 1 : 0);
    if (r < 0) throw systemError(r, 'setsockopt', spec.name);
  }
  const r = n.listen(fd, spec.backlog ?? defaultBacklog);
  if (r < 0) throw systemError(r, 'listen', spec.name);
}
