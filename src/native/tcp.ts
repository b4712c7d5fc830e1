// TCP_NODELAY on a listening socket: Linux copies it to every connection the
// socket accepts (the accepted socket is a clone of the listener, Nagle flag
// included; checked by test/nodelay.test.ts), so `?nodelay=1` on a tcp
// listener gives it to servers that never set it on their connections
// themselves (e.g. uvicorn on an inherited fd, which it takes for a Unix
// socket). Values from <netinet/in.h> and <netinet/tcp.h>, fixed in Linux's ABI.

/** IPPROTO_TCP, the setsockopt level of TCP options. */
export const IPPROTO_TCP = 6;
/** TCP_NODELAY: no Nagle delay on small writes. */
export const TCP_NODELAY = 1;
