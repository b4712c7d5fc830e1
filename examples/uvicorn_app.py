# An ASGI app for uvicorn under `fdbroker exec` (Debian: apt-get install uvicorn),
# with the drain uvicorn lacks:
#   fdbroker serve /tmp/app.sock --listen 'http=tcp://127.0.0.1:8080?nodelay=1'
#   fdbroker exec /tmp/app.sock --retire-signal SIGUSR1 -- uvicorn --fd 3 \
#     --timeout-keep-alive 2 --app-dir examples uvicorn_app:app
# - `--fd 3`: uvicorn takes the socket as a Unix one and never sets
#   TCP_NODELAY on its connections; the broker sets it on tcp listeners (unless
#   `?nodelay=0`), and Linux sets it on every accepted connection from there
#   (docs/guides/other-languages.md).
# - Ready: uvicorn sends no READY=1, so the app does, from the ASGI lifespan
#   startup ($NOTIFY_SOCKET from exec).
# - Drain: uvicorn's own SIGTERM shutdown closes every idle keep-alive
#   connection at once, which resets a client sending its next request at
#   that moment. So the retire signal is SIGUSR1: the app answers every later
#   request with "Connection: close" for DRAIN_S seconds (idle connections
#   end by the keep-alive timeout, announced in "Keep-Alive: timeout=N", which
#   Node's agent and others honour), then sends itself SIGTERM, when nothing
#   is left for uvicorn's shutdown to cut. It stops accepting at once: a
#   connection accepted during the drain and not yet read when uvicorn's
#   shutdown comes would be reset (2 of ~1,800 new connections in a trial).
import asyncio, gc, os, signal, socket

KEEPALIVE_S = int(os.environ.get("KEEPALIVE_S", "2"))  # match --timeout-keep-alive
DRAIN_S = KEEPALIVE_S + 1
DRAIN_SIGNAL = signal.SIGUSR1
draining = False


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), path)


def stop_accepting():
    # uvicorn keeps its asyncio servers to itself: found among live objects.
    # close() closes this process's copy of the listening socket only (the
    # broker and the next version keep theirs); accepted connections go on.
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractServer):
            obj.close()


def start_drain():
    global draining
    if draining:
        return
    draining = True
    stop_accepting()
    notify("STOPPING=1")
    asyncio.get_running_loop().call_later(DRAIN_S, os.kill, os.getpid(), signal.SIGTERM)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                asyncio.get_running_loop().add_signal_handler(DRAIN_SIGNAL, start_drain)
                await send({"type": "lifespan.startup.complete"})
                notify("READY=1")  # the socket is already bound: connections wait in its queue until uvicorn accepts
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b"%d uvicorn\n" % os.getpid()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close") if draining else (b"keep-alive", b"timeout=%d" % KEEPALIVE_S))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
