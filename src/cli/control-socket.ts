// What the CLI says when it cannot reach a broker. connect(2) on a path that
// is a regular file (or a directory, a fifo, ...) fails with ECONNREFUSED like
// a stale socket does, and the library then suggests starting a broker there,
// which would fail too because the path is taken: say what the path is instead.
import * as fs from 'node:fs';
import { BrokerConnection, type ConnectOptions } from '../client/connection';
import { FdbrokerError } from '../protocol/errors';

function kindOf(st: fs.Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a fifo';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'some other kind of file';
}

/** `err` from connecting to `path`, or a clearer error when the path exists and is not a socket. */
export function explainConnectError(err: unknown, path: string): unknown {
  if ((err as FdbrokerError).code !== 'ERR_FDBROKER_NO_BROKER') return err;
  let st: fs.Stats;
  try {
    st = fs.statSync(path); // connect(2) follows symlinks; so does stat
  } catch {
    return err; // nothing there: "no broker, start one" is the right answer
  }
  if (st.isSocket()) return err;
  return new FdbrokerError('ERR_FDBROKER_NOT_A_BROKER',
    `${path} is not a socket but ${kindOf(st)}: give the control socket path the broker was started with`, { cause: err });
}

/** BrokerConnection.connect with explainConnectError applied. */
export async function connectToBroker(path: string, options?: ConnectOptions): Promise<BrokerConnection> {
  try {
    return await BrokerConnection.connect(path, options);
  } catch (err) {
    throw explainConnectError(err, path);
  }
}
