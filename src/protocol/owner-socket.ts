// Where a broker's owner-only control socket is, for brokers and clients
// alike (broker/owner-socket.ts creates it, client/control-target.ts picks it).

/** PATH.owner: the control socket only the broker's own user (and root) can connect to. */
export function ownerSocketPath(controlPath: string): string {
  return `${controlPath}.owner`;
}

/** Its mode: the owner only, whatever --mode the shared socket has. */
export const OWNER_SOCKET_MODE = 0o600;
