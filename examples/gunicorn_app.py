# A WSGI app for gunicorn under `fdbroker exec` (Debian: apt-get install gunicorn):
#   fdbroker exec /tmp/app.sock -- gunicorn --workers 2 \
#     --graceful-timeout 10 --chdir examples gunicorn_app:app
# gunicorn takes the listener at fd 3 from LISTEN_FDS (do not add --bind
# fd://3 as well: it would open fd 3 twice and fail with EBADF) and says
# READY=1 on $NOTIFY_SOCKET itself once it is booted, so `--ready notify`
# (exec's default) works as is. exec's retire signal, SIGTERM, is gunicorn's
# graceful shutdown: the arbiter closes its listening socket, each worker
# finishes the requests it has and exits, and whatever is left at
# --graceful-timeout is killed. The default sync worker answers every request
# with "Connection: close", so keep-alive clients lose nothing; with
# --worker-class gthread (keep-alive on), idle keep-alive connections are
# closed at the SIGTERM: see docs/guides/other-languages.md.
import os


def app(environ, start_response):
    # The arbiter's pid first: it is the process `fdbroker exec` started.
    body = b"%d gunicorn worker %d\n" % (os.getppid(), os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
