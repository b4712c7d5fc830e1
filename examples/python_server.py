# A Python HTTP/1.1 keep-alive server for `fdbroker exec` (standard library only):
#   fdbroker exec /tmp/app.sock -- python3 examples/python_server.py
# It serves the listener at fd 3 (LISTEN_FDS), says READY=1 on $NOTIFY_SOCKET,
# and on SIGTERM (the retire signal) drains: stops accepting, answers each
# further request with "Connection: close", lets idle keep-alive connections
# end after KEEPALIVE_S (announced in "Keep-Alive: timeout=N", which clients
# such as Node's agent honour), and exits when every connection is done.
# The main thread waits with a timeout, never in a bare Event().wait(): see
# docs/guides/other-languages.md.
import os, signal, socket, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEEPALIVE_S = 5
draining = threading.Event()
open_conns = set()
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = KEEPALIVE_S + 1  # an idle keep-alive connection ends after this

    def setup(self):
        super().setup()
        with lock: open_conns.add(self.connection)

    def finish(self):
        super().finish()
        with lock: open_conns.discard(self.connection)

    def do_GET(self):
        body = b"%d python\n" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Keep-Alive", "timeout=%d" % KEEPALIVE_S)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    def server_bind(self):  # the socket is inherited, already bound and listening
        pass
    def server_activate(self):
        pass

def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg, path)
    s.close()

def main():
    # fd 3 is the first listener exec passes (--names picks them and their
    # order); any further ones (fd 4, ...) are left alone.
    n = os.environ.get("LISTEN_FDS", "")
    assert n.isdigit() and int(n) >= 1, "no listener at fd 3 (LISTEN_FDS=%r): run me under fdbroker exec" % n
    srv = Server(("", 0), Handler, bind_and_activate=False)
    srv.socket.close()
    srv.socket = socket.socket(fileno=3)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    notify(b"READY=1")
    print("ready %d" % os.getpid(), flush=True)
    while not stop.wait(0.2):  # a bare stop.wait() can miss SIGTERM
        pass
    draining.set()
    srv.shutdown()           # stop accepting; the broker and the successor keep the socket
    srv.socket.close()
    while True:
        with lock:
            if not open_conns:
                break
        time.sleep(0.05)
    print("drained %d" % os.getpid(), flush=True)

main()
