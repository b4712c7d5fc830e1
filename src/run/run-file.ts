// The state file of `fdbroker run`, PATH.run.json beside the control socket:
// run's pid and the last deploy it started (pid, state, the new version's
// last lines of output when it failed). `fdbroker deploy PATH` reads it to
// find the `run` to signal (SIGHUP) and to follow the deploy it starts. The
// control socket's directory is one others cannot write (see SECURITY.md), and
// the file is written 0600 and renamed into place, so a reader never sees half of it.
import * as fs from 'node:fs';

export interface RunDeploy {
  /** Counts deploys since run started: a reader waits for the next one. */
  seq: number;
  /** The started process (the generation's pid, or its wrapper's). */
  pid?: number;
  state: 'started' | 'deployed' | 'failed' | 'refused';
  why?: string;
  /** The failed version's last lines of output. */
  tail?: string[];
  /** ms from start to ready (deployed). */
  readyMs?: number;
}

export interface RunFile { pid: number; deploy: RunDeploy | null }

export function runFilePath(controlPath: string): string {
  return `${controlPath}.run.json`;
}

export function writeRunFile(controlPath: string, state: RunFile): void {
  const p = runFilePath(controlPath);
  const tmp = `${p}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, p);
}

/** The file's contents, or undefined when there is none (or it cannot be read or parsed). */
export function readRunFile(controlPath: string): RunFile | undefined {
  try {
    const j = JSON.parse(fs.readFileSync(runFilePath(controlPath), 'utf8')) as RunFile;
    return typeof j.pid === 'number' ? j : undefined;
  } catch {
    return undefined;
  }
}

export function removeRunFile(controlPath: string): void {
  try { fs.unlinkSync(runFilePath(controlPath)); } catch { /* already gone */ }
}
