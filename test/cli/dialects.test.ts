// `fdbroker exec --inherit DIALECT` with the real servers (Debian's
// packages): each server is deployed over itself (a second `fdbroker exec`
// generation replaces the first) under keep-alive and new-connection load on
// 127.0.0.1 with clients that never retry; every failure is counted by kind
// and none is allowed. The numbers are in docs/guides/other-languages.md.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { CLI, FIXTURES, cleanup, run, startBroker, tmpDir, type Proc } from '../helpers';
import { gunicorn, haproxy, itWith, nginx, puma, python3, python3Command, unicorn, uvicorn, type Requirement } from '../requirements';
import { EXAMPLES, OLD_GONE_MAX_MS, SWAP_BROKER_FLAGS, execDeployUnderLoad } from '../swap-helpers';

/** At least this many requests served per kind of load (a server that never served fails). */
const MIN_OK = 100;

afterEach(cleanup);

interface Case {
  name: string;
  needs: () => Requirement[];
  /** exec's flags before `--` (--inherit, --ready, --retire-signal). */
  flags: string[];
  /** The server's command for generation `gen` (1, 2), serving the broker's listener on 127.0.0.1:port. */
  cmd: (dir: string, port: number, gen: number) => string[];
  /**
   * The server's own graceful stop closes idle keep-alive connections under
   * the clients' next requests: keep-alive clients may fail with resets only
   * (counted, in the docs); new-connection clients still lose nothing.
   */
  resets?: true;
}

/** What a server closing an idle keep-alive connection under a client's next request looks like to Node's client. */
const RESET_KINDS = ['ECONNRESET', 'socket hang up', 'EPIPE'];

const PID_APP = path.join(FIXTURES, 'pid_app.ru');

function nginxConf(dir: string, port: number, keepalive: boolean): string {
  const file = path.join(dir, 'nginx.conf');
  // `listen` must be the held address: nginx matches each inherited fd to a listen by address.
  fs.writeFileSync(file, `daemon off;
master_process on;
worker_processes 2;
error_log stderr notice;
events { worker_connections 512; }
http {
  access_log off;
  keepalive_timeout ${keepalive ? '5s' : '0'};
  server { listen 127.0.0.1:${port}; location / { return 200 "$pid nginx\\n"; } }
}
`);
  return file;
}

function haproxyConf(dir: string, keepalive: boolean): string {
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, `global
  hard-stop-after 10s
defaults
  mode http
  timeout client 10s
  timeout connect 5s
  timeout server 10s
  timeout http-keep-alive 5s
frontend web
  ${keepalive ? '' : 'option httpclose'}
  bind "fd@\${FDBROKER_FD_HTTP}"
  http-request return status 200 content-type text/plain lf-string "%pid haproxy\\n"
`);
  return file;
}

/** Puma exits 0 after its graceful stop on SIGTERM (by default it re-raises SIGTERM: exec would report 143). */
function pumaConf(dir: string): string {
  const file = path.join(dir, 'puma.rb');
  fs.writeFileSync(file, 'raise_exception_on_sigterm false\nqueue_requests false\n');
  return file;
}

function unicornConf(dir: string, port: number): string {
  const file = path.join(dir, 'unicorn.rb');
  fs.writeFileSync(file, `listen "127.0.0.1:${port}"\nworker_processes 2\ntimeout 30\n`);
  return file;
}

const cases: Case[] = [
  { name: 'systemd (the default): Puma 5.6 with LISTEN_FDS and LISTEN_PID', needs: () => [puma()],
    flags: ['--ready', 'immediate'],
    cmd: (dir, port) => ['puma', '-C', pumaConf(dir), '--bind', `tcp://127.0.0.1:${port}`, '--threads', '2:4', PID_APP] },
  // No --ready, no --retire-signal: the nginx dialect implies immediate and SIGQUIT.
  { name: 'nginx: NGINX=3;, SIGQUIT (its graceful quit), keepalive_timeout 0', needs: () => [nginx()],
    flags: ['--inherit', 'nginx'],
    cmd: (dir, port, gen) => ['/usr/sbin/nginx', '-p', dir, '-c', nginxConf(dir, port, false), '-g', `pid ${dir}/nginx-${gen}.pid;`] },
  { name: 'nginx: NGINX=3;, SIGQUIT, keepalive_timeout 5s (its quit closes idle keep-alive connections)', needs: () => [nginx()], resets: true,
    flags: ['--inherit', 'nginx', '--ready', 'immediate', '--retire-signal', 'SIGQUIT'],
    cmd: (dir, port, gen) => ['/usr/sbin/nginx', '-p', dir, '-c', nginxConf(dir, port, true), '-g', `pid ${dir}/nginx-${gen}.pid;`] },
  { name: 'haproxy: bind fd@${FDBROKER_FD_HTTP}, SIGUSR1 (its soft stop), option httpclose', needs: () => [haproxy()],
    flags: ['--inherit', 'haproxy', '--ready', 'immediate', '--retire-signal', 'SIGUSR1'],
    cmd: (dir) => ['haproxy', '-db', '-f', haproxyConf(dir, false)] },
  { name: 'haproxy: bind fd@${FDBROKER_FD_HTTP}, SIGUSR1, keep-alive (its soft stop closes idle keep-alive connections)', needs: () => [haproxy()], resets: true,
    flags: ['--inherit', 'haproxy', '--ready', 'immediate', '--retire-signal', 'SIGUSR1'],
    cmd: (dir) => ['haproxy', '-db', '-f', haproxyConf(dir, true)] },
  { name: 'gunicorn: GUNICORN_FD and LISTEN_FDS, SIGTERM (its graceful stop), READY=1 from gunicorn', needs: () => [gunicorn()],
    flags: ['--inherit', 'gunicorn'],
    cmd: () => ['gunicorn', '--workers', '2', '--graceful-timeout', '10', '--chdir', EXAMPLES, 'gunicorn_app:app'] },
  { name: 'uvicorn: UVICORN_FD (its --fd), the app drains on SIGUSR1', needs: () => [uvicorn()],
    flags: ['--inherit', 'uvicorn', '--retire-signal', 'SIGUSR1'],
    cmd: () => ['uvicorn', '--timeout-keep-alive', '2', '--app-dir', EXAMPLES, 'uvicorn_app:app'] },
  { name: 'puma: PUMA_INHERIT_0 matched to --bind', needs: () => [puma()],
    flags: ['--inherit', 'puma', '--ready', 'immediate'],
    cmd: (dir, port) => ['puma', '-C', pumaConf(dir), '--bind', `tcp://127.0.0.1:${port}`, '--threads', '2:4', PID_APP] },
  { name: 'unicorn: UNICORN_FD, SIGQUIT (its graceful stop)', needs: () => [unicorn()],
    flags: ['--inherit', 'unicorn', '--ready', 'immediate', '--retire-signal', 'SIGQUIT'],
    cmd: (dir, port) => ['unicorn', '-c', unicornConf(dir, port), PID_APP] },
  { name: 'einhorn: EINHORN_FD_COUNT and EINHORN_FD_0, read by a Node program', needs: () => [],
    flags: ['--inherit', 'einhorn', '--ready', 'immediate'],
    cmd: () => [process.execPath, path.join(FIXTURES, 'einhorn-app.js')] },
];

describe('fdbroker exec --inherit: each server deployed over itself under load', () => {
  for (const c of cases) {
    itWith(c.needs(), c.resets ? `${c.name}: keep-alive clients lose resets only, new connections nothing` : `${c.name}: 0 failed`, async () => {
      const dir = tmpDir();
      const broker = await startBroker(dir, ['http=tcp://127.0.0.1:0?nodelay=1'], SWAP_BROKER_FLAGS);
      const port = broker.ports.http!;
      const start = (gen: number): Proc => run(process.execPath, [CLI, 'exec', broker.sock, ...c.flags, '--', ...c.cmd(dir, port, gen)], { cwd: dir });
      const r = await execDeployUnderLoad(broker.sock, port, start);
      const { first, second, before, after, goneMs, keepAlive: ka, newConnections: nc } = r;
      console.error(JSON.stringify({ case: c.name, keepAlive: { ok: ka.ok, failed: ka.failed, byKind: ka.byKind },
        newConnections: { ok: nc.ok, failed: nc.failed, byKind: nc.byKind }, goneMs }));

      expect(before.status, first.stderr()).toBe(200);
      expect(r.firstExit.code, `first generation's exec: ${first.stderr()}`).toBe(0);
      expect(goneMs).toBeLessThan(OLD_GONE_MAX_MS);
      // The second generation serves on the held socket: a request after the first is gone is answered, by another process.
      expect(after.status, second.stderr()).toBe(200);
      expect(after.body.split(' ')[0]).not.toBe(before.body.split(' ')[0]);
      if (c.resets) {
        for (const kind of Object.keys(ka.byKind)) expect(RESET_KINDS).toContain(kind);
      } else {
        expect(ka.byKind).toEqual({});
      }
      expect(nc.byKind).toEqual({});
      expect(ka.ok).toBeGreaterThan(MIN_OK);
      expect(nc.ok).toBeGreaterThan(MIN_OK);
    }, 40_000);
  }
});

describe('fdbroker exec --inherit: the variables a program gets', () => {
  /** Runs test/fixtures/dialect_env.py under exec with two listeners; returns what it printed. */
  async function envOf(flags: string[], listeners = ['http=tcp://127.0.0.1:0', 'admin=tcp://127.0.0.1:0'], configText?: string) {
    const dir = tmpDir();
    const broker = await startBroker(dir, listeners, ['--quiet']);
    if (configText !== undefined) {
      fs.writeFileSync(path.join(dir, 'fdbroker.toml'), configText, { mode: 0o600 });
      flags = [...flags, '--config', path.join(dir, 'fdbroker.toml')];
    }
    const p = run(process.execPath, [CLI, 'exec', broker.sock, '--ready', 'immediate', ...flags, '--', python3Command(), path.join(FIXTURES, 'dialect_env.py')]);
    const ex = await p.exited;
    return { code: ex.code, stderr: p.stderr(), ports: broker.ports, out: ex.code === 0 ? JSON.parse(p.stdout()) as { pid: number; pidfdIno: string; env: Record<string, string>; fds: number[] } : undefined };
  }

  itWith([python3(9)], 'systemd (default): LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID its pid, LISTEN_PIDFDID its pidfd inode; the pipe that carried it is closed', async () => {
    const r = await envOf([]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.out!.env).toEqual({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:admin', LISTEN_PID: String(r.out!.pid), LISTEN_PIDFDID: r.out!.pidfdIno });
    expect(r.out!.fds).toEqual([3, 4]);
  });

  itWith([python3(9)], 'systemd with 7 listeners (fd 10 is past what /bin/sh redirects): no LISTEN_PIDFDID, no stray fd', async () => {
    const seven = Array.from({ length: 7 }, (_, i) => `l${i}=tcp://127.0.0.1:0`);
    const r = await envOf([], seven);
    expect(r.code, r.stderr).toBe(0);
    expect(r.out!.env).toEqual({ LISTEN_FDS: '7', LISTEN_FDNAMES: 'l0:l1:l2:l3:l4:l5:l6', LISTEN_PID: String(r.out!.pid) });
    expect(r.out!.fds).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });

  itWith([python3(9)], 'several dialects at once (nginx, haproxy, unicorn, einhorn), each fd named by listener', async () => {
    const r = await envOf(['--inherit', 'nginx', '--inherit', 'haproxy,unicorn', '--inherit', 'einhorn']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.out!.env).toEqual({
      NGINX: '3;4;', FDBROKER_FD_HTTP: '3', FDBROKER_FD_ADMIN: '4', UNICORN_FD: '3,4',
      EINHORN_FD_COUNT: '2', EINHORN_FDS: '3 4', EINHORN_FD_0: '3', EINHORN_FD_1: '4',
    });
  });

  itWith([python3(9)], 'gunicorn: GUNICORN_FD and the systemd variables; puma: PUMA_INHERIT_<n> with the held address', async () => {
    const g = await envOf(['--inherit', 'gunicorn']);
    expect(g.code, g.stderr).toBe(0);
    expect(g.out!.env).toMatchObject({ GUNICORN_FD: '3,4', LISTEN_FDS: '2', LISTEN_PID: String(g.out!.pid) });
    const p = await envOf(['--inherit', 'puma']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.out!.env).toEqual({
      PUMA_INHERIT_0: `3:tcp://127.0.0.1:${p.ports.http}`, PUMA_INHERIT_1: `4:tcp://127.0.0.1:${p.ports.admin}`,
      FDBROKER_FD_HTTP: '3', FDBROKER_FD_ADMIN: '4',
    });
  });

  itWith([python3(9)], 'the [exec] table of --config gives the dialect; a flag overrides it', async () => {
    const r = await envOf([], ['http=tcp://127.0.0.1:0'], '[exec]\ninherit = ["uvicorn"]\n');
    expect(r.code, r.stderr).toBe(0);
    expect(r.out!.env).toEqual({ UVICORN_FD: '3', FDBROKER_FD_HTTP: '3' });
    const o = await envOf(['--inherit', 'nginx'], ['http=tcp://127.0.0.1:0'], '[exec]\ninherit = ["uvicorn"]\n');
    expect(o.out!.env).toEqual({ NGINX: '3;', FDBROKER_FD_HTTP: '3' });
  });

  itWith([python3(9)], 'refused before anything starts: an unknown dialect (usage, exit 2), uvicorn with two listeners, puma with systemd (exit 1)', async () => {
    const u = await envOf(['--inherit', 'apache']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/unknown dialect/);
    const two = await envOf(['--inherit', 'uvicorn']);
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(/ERR_FDBROKER_INVALID_ARGUMENT/);
    const both = await envOf(['--inherit', 'puma,systemd']);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/ERR_FDBROKER_INVALID_ARGUMENT/);
    const bad = await envOf([], ['http=tcp://127.0.0.1:0'], '[exec]\ninherit = ["apache"]\n');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ERR_FDBROKER_INVALID_CONFIG.*exec\.inherit\[0\]/);
  });
});
