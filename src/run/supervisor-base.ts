// What both run supervisors (Supervisor, supervisor.ts; InstanceSupervisor,
// instances.ts) do with their processes alike: start one and hear its exit,
// stop one (SIGTERM, then SIGKILL after the stop timeout), stop one not ready
// in time, tell which process a generation is, and stop them all.
//
// Contract: the policy (what a crash, a ready, a rollback or an exit nobody
// asked for leads to) is each subclass's: onReady, onRollback,
// onMemberExit, cancelTimers. An exit while stopping is handled here alone.
import { EventEmitter } from 'node:events';
import type { GenerationInfo } from '../core/generation-info';
import type { RollbackEvent } from '../broker/events';
import { inTree } from '../cli/proc-tree';
import { exitStatus } from '../cli/exec-program';
import { CrashWindow } from './crash-loop';
import { DEFAULT_RUN_READY_TIMEOUT_MS, DEFAULT_RUN_STOP_TIMEOUT_MS } from './defaults';
import { Member, type Role } from './member';
import type { ExitInfo, SupervisorEvents, SupervisorOptions } from './supervisor-types';

export abstract class SupervisorBase<O extends Omit<SupervisorOptions, 'spare'>> extends EventEmitter<SupervisorEvents> {
  protected readonly o: O;
  protected readonly members = new Set<Member>();
  protected readonly crashes: CrashWindow;
  protected readonly now: () => number;
  protected stopping = false;
  private stopWaiters: Array<() => void> = [];
  private readonly unhook: () => void;
  /** Exit status to report (RUN_EXIT set by the CLI): a SIGKILL at the stop timeout is remembered. */
  killedAtStop = false;

  constructor(options: O) {
    super();
    this.o = options;
    this.now = options.now ?? Date.now;
    this.crashes = new CrashWindow(options.crashLoop?.count, options.crashLoop?.windowMs);
    const b = options.broker;
    const onJoin = (g: GenerationInfo) => this.onJoin(g);
    const onReady = (g: GenerationInfo, retire: number[]) => this.onReady(g, retire);
    const onRollback = (e: RollbackEvent) => this.onRollback(e);
    const onOverdue = (g: GenerationInfo, what: 'ready' | 'retire') => { if (what === 'ready') this.onReadyOverdue(g); };
    b.on('join', onJoin);
    b.on('rejoin', onJoin);
    b.on('ready', onReady);
    b.on('rollback', onRollback);
    b.on('overdue', onOverdue);
    this.unhook = () => {
      b.off('join', onJoin);
      b.off('rejoin', onJoin);
      b.off('ready', onReady);
      b.off('rollback', onRollback);
      b.off('overdue', onOverdue);
    };
  }

  /** Whether `pid` is a process run started (child_process reaps it; the Reaper must not). */
  owns(pid: number): boolean {
    return [...this.members].some((m) => m.pid === pid);
  }

  /** Stops every process (SIGTERM once, SIGKILL after the stop timeout); resolves when all have exited. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.cancelTimers();
      for (const m of this.members) this.stopMember(m);
    }
    return new Promise((resolve) => {
      if (this.members.size === 0) {
        this.unhook();
        resolve();
      } else this.stopWaiters.push(resolve);
    });
  }

  /** The policy's own timers (restarts, spares), cleared once stop() begins. */
  protected abstract cancelTimers(): void;
  protected abstract onReady(g: GenerationInfo, retire: number[]): void;
  protected abstract onRollback(e: RollbackEvent): void;
  /** A process exited while run is not stopping; it is no longer in `members`. */
  protected abstract onMemberExit(m: Member, exit: ExitInfo, tail: string[]): void;

  /** Starts the command as a process of `role` (a spare gets the promotion pipe and no ready timer); `slot` with --instances. */
  protected launch(role: Role, why: SupervisorEvents['spawn'][2], slot?: number): Member {
    const o = this.o;
    const m = Member.launch({
      controlPath: o.broker.controlPath, command: o.command, args: o.args ?? [], contract: o.contract,
      spare: role === 'spare', slot, env: o.env ?? process.env,
      output: (pid, stream, chunk) => this.emit('output', pid, stream, chunk),
    }, role, this.now());
    this.members.add(m);
    let exited = false;
    const onExit = (code: number | null, signal: NodeJS.Signals | null, startError?: Error) => {
      if (exited) return;
      exited = true;
      this.onExit(m, {
        pid: m.pid, signal, status: startError ? 127 : exitStatus(code, signal),
        text: startError ? `could not be started: ${startError.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`,
      });
    };
    // 'error' without 'exit': the command could not be started at all.
    m.child.on('error', (err) => { if (m.child.pid === undefined) onExit(null, null, err); });
    m.child.on('exit', (code, signal) => onExit(code, signal));
    if (m.pid > 0) {
      this.emit('spawn', m.pid, role, why);
      if (role !== 'spare') this.armReadyTimer(m);
    }
    return m;
  }

  protected armReadyTimer(m: Member): void {
    const ms = this.o.readyTimeoutMs ?? DEFAULT_RUN_READY_TIMEOUT_MS;
    clearTimeout(m.readyTimer);
    m.readyTimer = setTimeout(() => {
      if (m.ready || !m.alive || m.stopRequested) return;
      this.emit('readyTimeout', m.pid, ms);
      this.stopUnready(m);
    }, ms);
  }

  /** SIGTERM, then SIGKILL after the stop timeout. `asCrash`: its exit still counts as a crash. */
  protected stopMember(m: Member, asCrash = false): void {
    if (!asCrash) m.stopRequested = true;
    m.signal('SIGTERM');
    if (m.killTimer) return;
    m.killTimer = setTimeout(() => {
      if (!m.alive) return;
      if (this.stopping) this.killedAtStop = true;
      this.emit('kill', m.pid);
      m.signal('SIGKILL');
    }, this.o.stopTimeoutMs ?? DEFAULT_RUN_STOP_TIMEOUT_MS);
  }

  protected memberOfPid(pid: number): Member | undefined {
    const mine = [...this.members];
    return mine.find((m) => m.pid === pid) ?? mine.find((m) => m.generation === undefined && inTree(pid, m.pid));
  }

  protected memberOfGeneration(n: number): Member | undefined {
    return [...this.members].find((m) => m.generation === n);
  }

  /**
   * The start of every 'ready': the generations the broker retires are retiring
   * (a spare stays one), and the ready one is marked ready, its ready timer
   * cleared. Returns it (undefined: none of run's processes).
   */
  protected markReady(g: GenerationInfo, retire: number[]): Member | undefined {
    for (const n of retire) {
      const old = this.memberOfGeneration(n);
      if (old && old.role !== 'spare') old.role = 'retiring';
    }
    const m = this.memberOfGeneration(g.number) ?? this.memberOfPid(g.pid);
    if (!m) return undefined;
    m.generation ??= g.number;
    m.ready = true;
    clearTimeout(m.readyTimer);
    return m;
  }

  /**
   * A rollback's failed generation, alive (it stopped accepting, or hung): stops
   * it; its exit is no crash to count twice. Returns it when it was serving,
   * the broker resumed none and run is not stopping: the caller replaces it.
   */
  protected stopFailed(e: RollbackEvent): Member | undefined {
    const failed = this.memberOfGeneration(e.failed.number);
    if (!failed || !failed.alive || e.reason === 'left') return undefined;
    const wasServing = failed.role === 'serving';
    failed.role = 'retiring';
    this.stopMember(failed);
    return wasServing && e.resumed === undefined && !this.stopping ? failed : undefined;
  }

  /** Records an unrequested exit; on a crash loop emits 'crashLoop', stops everything and returns undefined, else the crash count. */
  protected recordCrash(exit: ExitInfo, tail: string[]): number | undefined {
    const count = this.crashes.record(this.now());
    if (!this.crashes.looping) return count;
    this.emit('crashLoop', count, this.crashes.windowMs, exit, tail);
    void this.stop();
    return undefined;
  }

  private onJoin(g: GenerationInfo): void {
    const m = this.memberOfPid(g.pid);
    if (m && m.generation === undefined) {
      m.generation = g.number;
      if (m.role === 'spare') this.emit('spareJoined', m.pid, g.number);
    }
  }

  private onReadyOverdue(g: GenerationInfo): void {
    const m = this.memberOfGeneration(g.number);
    if (!m || m.ready || m.stopRequested) return;
    this.emit('readyTimeout', m.pid, this.now() - m.startedAt);
    this.stopUnready(m);
  }

  /** A process not ready in time: a restart that hangs counts as a crash when it exits; a deploy's candidate fails. */
  private stopUnready(m: Member): void {
    if (m.role === 'candidate') m.stopRequested = true;
    this.stopMember(m, m.role !== 'candidate');
  }

  private onExit(m: Member, exit: ExitInfo): void {
    this.members.delete(m);
    m.clearTimers();
    const tail = m.tail.text();
    if (!this.stopping) {
      this.onMemberExit(m, exit, tail);
      return;
    }
    if (this.members.size === 0) {
      this.unhook();
      for (const w of this.stopWaiters.splice(0)) w();
    }
  }
}
