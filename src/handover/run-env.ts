// A process started by `fdbroker run`: where its broker is, and, for a warm
// spare, the wait for promotion. startGeneration() without a path reads these.
//
// FDBROKER_PATH: the control path of the `run` that started this process.
// FDBROKER_SPARE_FD: set on a warm spare (`run --spare`): an inherited pipe
//   on which `run` writes one byte when the spare is to serve. The spare
//   joins at once (as a spare: exempt from the ready timeout) and holds its
//   listeners without accepting; the accept queue waits in the listening
//   socket meanwhile. startGeneration() resolves at the byte, so the app
//   attaches and says ready only then. The pipe's end without a byte means
//   the `run` is gone.
// FDBROKER_SLOT: with `run --instances N`, the instance slot (0 to N-1) this
//   process fills: it joins in that slot, and its ready retires only the
//   older process of the same slot.
import * as net from 'node:net';
import * as nodePath from 'node:path';
import { FdbrokerError } from '../protocol/errors';
import { MAX_INSTANCES } from '../protocol/limits';

export const RUN_PATH_ENV = 'FDBROKER_PATH';
export const RUN_SPARE_FD_ENV = 'FDBROKER_SPARE_FD';
export const RUN_SLOT_ENV = 'FDBROKER_SLOT';

/** The control path `fdbroker run` gave this process, its instance slot and, for a warm spare, its promotion pipe's fd. */
export function fromRun(env: NodeJS.ProcessEnv = process.env): { path: string; slot?: number; spareFd?: number } {
  const path = env[RUN_PATH_ENV];
  if (!path) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT',
      `startGeneration() was given no broker path and ${RUN_PATH_ENV} is not set: pass the path, or start the app with \`fdbroker run PATH --listen NAME=SPEC -- CMD\``);
  }
  const slotText = env[RUN_SLOT_ENV];
  // Read once, as the spare's fd: a process this one starts fills no slot of its own.
  delete env[RUN_SLOT_ENV];
  const slot = slotText === undefined ? undefined : Number(slotText);
  if (slot !== undefined && !(Number.isInteger(slot) && slot >= 0 && slot < MAX_INSTANCES)) {
    throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `${RUN_SLOT_ENV} is not an instance slot (0 to ${MAX_INSTANCES - 1}): "${slotText}"`);
  }
  const spare = env[RUN_SPARE_FD_ENV];
  if (spare !== undefined) {
    // Read once: a process this one starts is no spare.
    delete env[RUN_SPARE_FD_ENV];
    const fd = Number(spare);
    if (!Number.isInteger(fd) || fd < 0) throw new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', `${RUN_SPARE_FD_ENV} is not an fd: "${spare}"`);
    return { path, slot, spareFd: fd };
  }
  return { path, slot };
}

/** Whether `path` is the control path of the `fdbroker run` that started this process (FDBROKER_PATH), so joining it follows run's rules (spare, slot). */
export function startedByRunAt(path: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const runPath = env[RUN_PATH_ENV];
  return runPath !== undefined && nodePath.resolve(runPath) === nodePath.resolve(path);
}

/** Resolves when a byte arrives on `fd`; rejects with ERR_FDBROKER_NO_BROKER if it ends first. The pipe is closed either way. */
export function promoted(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const pipe = new net.Socket({ fd, readable: true, writable: false });
    let done = false;
    pipe.once('data', () => {
      done = true;
      pipe.destroy();
      resolve();
    });
    const gone = (err?: Error) => {
      if (done) return;
      done = true;
      pipe.destroy();
      reject(new FdbrokerError('ERR_FDBROKER_NO_BROKER', 'the `fdbroker run` that started this warm spare is gone', { cause: err }));
    };
    pipe.once('end', () => gone());
    pipe.once('error', gone);
  });
}
