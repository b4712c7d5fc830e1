// The connection's first steps: what a failed connect(2) means (no broker,
// not a broker, access), the handshake's first answer within the deadline,
// and the errors built from a broker's replies.
import * as fs from 'node:fs';
import { native } from '../native/binding';
import { Channel } from '../transport/channel';
import { FdbrokerError, systemError } from '../protocol/errors';
import { decodeBrokerMessage, type BrokerMessage } from '../protocol/messages';

function kindOf(st: fs.Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a fifo';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'some other kind of file';
}

export function connectError(r: number, path: string): Error {
  const cause = systemError(r, 'connect', path);
  switch (cause.code) {
    case 'ENOENT':
    case 'ECONNREFUSED': {
      // connect(2) on a regular file (or a directory, a fifo) also answers
      // ECONNREFUSED: say what the path is rather than suggest starting a
      // broker there, which would fail because the path is taken.
      let st: fs.Stats | undefined;
      try { st = fs.statSync(path); } catch { st = undefined; }
      if (st && !st.isSocket()) {
        return new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
          `${path} is not a socket but ${kindOf(st)}: give the control socket path the broker was started with`, { cause });
      }
      return new FdbrokerError('ERR_FDBROKER_NO_BROKER',
        `no broker is listening on ${path} (${cause.code}): start one with \`fdbroker serve ${path} --listen NAME=SPEC\``
          + ' (if a broker stopped while apps still serve, start it again with the same --listen flags: it takes their listeners back, nothing is closed)', { cause });
    }
    case 'EACCES':
    case 'EPERM':
      return new FdbrokerError('ERR_FDBROKER_ACCESS_DENIED',
        `not allowed to connect to ${path} (${cause.code}): run as the broker's user, or let this user in on both levels: the socket file's mode/group (fdbroker serve --mode 0660 --group GID) and the broker's grants (--allow-uid or --allow-gid)`, { cause });
    case 'EPROTOTYPE':
    case 'ENOTSOCK':
      return new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
        `${path} is not an fdbroker control socket (${cause.code})`, { cause });
    default:
      return cause;
  }
}

/** Collects the first message during the handshake, with the deadline. */
export class PendingConnection {
  private onMsg: (payload: Buffer, fds: number[]) => void = () => {};
  private onErr: (e: Error) => void = () => {};
  private onClose: () => void = () => {};
  private first = true;
  /** Messages read in the same turn as the first one (a pipelined request's answer); their fds are owned here until taken. */
  readonly later: Array<{ msg: BrokerMessage; fds: number[] }> = [];
  constructor(private readonly channel: Channel, private readonly deadline: number, private readonly path: string) {}

  next(): Promise<{ msg: BrokerMessage }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.channel.close(); reject(timeoutError(this.path, 'handshake')); },
        Math.max(0, this.deadline - Date.now()));
      const done = (f: () => void) => { clearTimeout(timer); f(); };
      this.onMsg = (payload, fds) => done(() => {
        if (!this.first) {
          this.keepLater(payload, fds);
          return;
        }
        this.first = false;
        try {
          const msg = decodeBrokerMessage(payload, fds.length);
          closeAll(fds);
          resolve({ msg });
        } catch (err) {
          closeAll(fds);
          this.channel.close();
          reject(err);
        }
      });
      this.onErr = (e) => done(() => reject(e));
      this.onClose = () => done(() => reject(new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
        `${this.path} closed the connection without a reply: is it an fdbroker control socket?`)));
      this.channel.on('message', this.onMsg);
      this.channel.on('error', this.onErr);
      this.channel.on('close', this.onClose);
      this.channel.resume();
    });
  }

  private keepLater(payload: Buffer, fds: number[]): void {
    let msg: BrokerMessage;
    try {
      msg = decodeBrokerMessage(payload, fds.length);
    } catch (err) {
      closeAll(fds);
      // Handed on as the answer: collecting it fails the connection with this error.
      msg = { type: 'error', code: (err as FdbrokerError).code ?? 'ERR_FDBROKER_PROTOCOL', message: (err as Error).message };
      fds = [];
      this.channel.close();
    }
    this.later.push({ msg, fds });
  }

  /** Closes the fds of messages nobody will take. */
  dropLater(): void {
    for (const m of this.later.splice(0)) closeAll(m.fds);
  }

  detach(): void {
    this.channel.off('message', this.onMsg);
    this.channel.off('error', this.onErr);
    this.channel.off('close', this.onClose);
  }
}

export function closeAll(fds: number[]): void {
  for (const fd of fds) native().close(fd);
}

export function timeoutError(path: string, what: string): FdbrokerError {
  return new FdbrokerError('ERR_FDBROKER_TIMEOUT', `the broker at ${path} did not answer in time (${what})`);
}

export function brokerError(msg: Extract<BrokerMessage, { type: 'error' }>): FdbrokerError {
  // `cause`: the broker's system error code, as a Node-shaped cause.
  const cause = msg.cause ? Object.assign(new Error(msg.cause), { code: msg.cause }) : undefined;
  const err = new FdbrokerError(msg.code, msg.message, cause ? { cause } : undefined);
  if (msg.names) (err as FdbrokerError & { names?: string[] }).names = msg.names;
  return err;
}
