// The supervisors' shared types (options, events, the interface run drives):
// a leaf module, so that supervisor.ts, instances.ts and supervisor-base.ts
// all import it without a cycle.
import type { EventEmitter } from 'node:events';
import type { Broker } from '../broker/broker';
import type { BackoffOptions } from './backoff';
import type { Contract, Role } from './member';

export interface SupervisorOptions {
  broker: Broker;
  command: string;
  args?: string[];
  contract: Contract;
  /** Keep a warm spare (library apps only). */
  spare?: boolean;
  /** A started process not ready within this many ms is stopped (default 60 s). */
  readyTimeoutMs?: number;
  /** SIGKILL this long after SIGTERM, when stopping (default 30 s). */
  stopTimeoutMs?: number;
  backoff?: BackoffOptions;
  crashLoop?: { count: number; windowMs: number };
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

/** How a process ended: its exit status (128+N for signal N; 127 when it could not be started) and the words for it. */
export interface ExitInfo { pid: number; status: number; signal: NodeJS.Signals | null; text: string }

export interface SupervisorEvents {
  /** A process was started. */
  spawn: [pid: number, role: Role, why: 'start' | 'restart' | 'deploy' | 'spare'];
  /** A process's output (run prints it through). */
  output: [pid: number, stream: 'stdout' | 'stderr', chunk: Buffer];
  /** A process's generation is ready; `ms` since it was started. */
  ready: [pid: number, generation: number, ms: number];
  /** The serving process (or the spare) exited without being asked; `restartInMs` until the next one starts (undefined: a spare is promoted, or the broker resumes the one standing by). */
  crash: [exit: ExitInfo, tail: string[], restartInMs: number | undefined];
  /** The spare joined the broker (as a spare): it holds the listeners and waits, warm, to be promoted. */
  spareJoined: [pid: number, generation: number];
  /** The spare was promoted: it starts accepting and says ready now. */
  promote: [pid: number];
  /** A retired process exited. */
  retired: [exit: ExitInfo];
  /** The broker resumed an older process after the newest failed: it serves again. */
  resumed: [pid: number, generation: number];
  /** deploy(): the new process is ready and serves. */
  deployed: [pid: number, generation: number, ms: number];
  /** deploy(): the new process failed before it was ready and was stopped; the old one serves on. */
  deployFailed: [pid: number, why: string, tail: string[]];
  /** A deploy was asked while one is in flight, or while stopping: nothing was started. */
  deployRefused: [why: string];
  /** A process was not ready in time and was stopped. */
  readyTimeout: [pid: number, ms: number];
  /** A process outlived the stop timeout and was sent SIGKILL. */
  kill: [pid: number];
  /** Crash loop: everything is being stopped. */
  crashLoop: [count: number, windowMs: number, last: ExitInfo, tail: string[]];
}

/** What run drives: one serving process (Supervisor) or N instances (InstanceSupervisor, instances.ts). */
export interface RunSupervisor extends EventEmitter<SupervisorEvents> {
  start(): void;
  deploy(): boolean;
  stop(): Promise<void>;
  owns(pid: number): boolean;
  readonly killedAtStop: boolean;
}
