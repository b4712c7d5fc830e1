// One spelling per IP address, for comparing addresses that came from
// different places (a flag, getsockname, /proc/net/tcp6).

/** "0::1" and "::1", "::" and "0:0:0:0:0:0:0:0" alike; IPv4 and anything unparsable as given. */
export function canonicalAddress(address: string): string {
  if (!address.includes(':')) return address;
  try {
    return new URL(`http://[${address}]/`).hostname;
  } catch {
    return address;
  }
}
