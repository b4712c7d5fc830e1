// Port sharing on a udp listener. SO_REUSEADDR is a property of the socket,
// not of an fd, so it is the same in the broker and every holder: two udp
// sockets that both set it share the port whatever their uid, and the kernel
// delivers datagrams to the one bound last. The broker never sets it on udp
// (broker/listeners.ts); this clears it after something else did.
import { native } from '../native/binding';
import { check } from '../protocol/errors';

/**
 * Clears SO_REUSEADDR on the udp socket `fd` (and on every duplicate of it).
 * Call it right after Node's `dgram` `socket.bind({ fd })`, which sets
 * SO_REUSEADDR on any fd it opens (libuv's uv_udp_open()). Leaves fd open.
 */
export function forbidAddressSharing(fd: number): void {
  const n = native();
  check(n.setsockoptInt(fd, n.constants.SOL_SOCKET, n.constants.SO_REUSEADDR, 0), 'setsockopt');
}
