// The supervisor of `fdbroker run --instances N`: N processes serve the same
// listeners at once, one per instance slot (0 to N-1), each a line of
// generations of its own in the broker (handover-core.ts: one ready per slot,
// a ready retires only its slot's older one).
//
// Contract:
// - Design: each tcp listener is a SO_REUSEPORT group of N sockets held by
//   the broker (broker/slot-sockets.ts), and slot k's process is handed
//   socket k. bench/instances.js measured it beside all N on the one shared
//   socket: with 4 instances of a hello-world app on 2 cores the shared
//   queue's busiest instance served 1.22-1.36x the mean (Linux wakes epoll
//   waiters on a shared socket roughly LIFO and libuv accepts until EAGAIN),
//   the group's 1.02-1.08x; the target is 1.3x. The group's cost: while a
//   slot has no process (a crash, until its restart is ready) the
//   connections hashed to its socket wait in its queue (none is refused or
//   reset, the broker holds the socket). Listeners with no group (inherited
//   from systemd, adopted, or unix) are shared by all slots.
// - A crash of one instance restarts that slot alone (restartDelay(), as
//   run without instances); the others serve their own share meanwhile. The crash loop
//   counts every slot's crashes (CRASH_LOOP_COUNT in CRASH_LOOP_WINDOW_MS).
// - deploy(): the slots are replaced one at a time, in order: the new process
//   of slot k starts, the broker retires slot k's old one once the new one is
//   ready, then slot k+1 starts. So N processes accept throughout. A new one
//   that exits or is not ready in time stops the roll ('deployFailed'): the
//   slots not reached yet keep the old version (the ones done keep the new;
//   a deploy again rolls every slot). One deploy at a time, and none while a
//   slot restarts.
// - stop(): as Supervisor (SIGTERM once to every process, SIGKILL after the
//   stop timeout).
// Emits Supervisor's events (cli/run.ts reports them the same way); no spare.
import { EventEmitter } from 'node:events';
import type { GenerationInfo } from '../core/generation-info';
import type { RollbackEvent } from '../broker/events';
import { inTree } from '../cli/proc-tree';
import { exitStatus } from '../cli/exec-program';
import { restartDelay } from './backoff';
import { CrashWindow } from './crash-loop';
import { DEFAULT_RUN_READY_TIMEOUT_MS, DEFAULT_RUN_STOP_TIMEOUT_MS, ROLLBACK_WAIT_MS } from './defaults';
import { Member, type Role } from './member';
import type { ExitInfo, RunSupervisor, SupervisorEvents, SupervisorOptions } from './supervisor';

export interface InstanceSupervisorOptions extends Omit<SupervisorOptions, 'spare'> {
  /** How many processes serve at once (2 or more; at most MAX_INSTANCES). */
  instances: number;
}

export class InstanceSupervisor extends EventEmitter<SupervisorEvents> implements RunSupervisor {
  private readonly o: InstanceSupervisorOptions;
  private readonly members = new Set<Member>();
  private readonly crashes: CrashWindow;
  private readonly now: () => number;
  private stopping = false;
  private readonly restartTimers = new Map<number, NodeJS.Timeout>();
  /** The deploy in flight: the slot being replaced now. */
  private roll: { slot: number; startedAt: number } | undefined;
  private stopWaiters: Array<() => void> = [];
  private readonly unhook: () => void;
  killedAtStop = false;

  constructor(options: InstanceSupervisorOptions) {
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

  processes(): Array<{ pid: number; role: Role; generation: number | undefined; ready: boolean; slot: number }> {
    return [...this.members].map((m) => ({ pid: m.pid, role: m.role, generation: m.generation, ready: m.ready, slot: m.slot }));
  }

  owns(pid: number): boolean {
    return [...this.members].some((m) => m.pid === pid);
  }

  start(): void {
    for (let slot = 0; slot < this.o.instances; slot++) this.launch(slot, 'serving', 'start');
  }

  /** Replaces the slots one at a time; false (and 'deployRefused') while a deploy or a restart is in flight, or run stops. */
  deploy(): boolean {
    if (this.stopping) {
      this.emit('deployRefused', 'stopping');
      return false;
    }
    if (this.roll) {
      this.emit('deployRefused', `a deploy is in flight (instance ${this.roll.slot} of ${this.o.instances} is being replaced)`);
      return false;
    }
    for (let slot = 0; slot < this.o.instances; slot++) {
      const s = this.serving(slot);
      if (!s?.ready) {
        this.emit('deployRefused', `instance ${slot} is ${s ? `starting (pid ${s.pid})` : 'restarting'} and not ready yet`);
        return false;
      }
    }
    this.roll = { slot: 0, startedAt: this.now() };
    this.launch(0, 'candidate', 'deploy');
    return true;
  }

  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      for (const t of this.restartTimers.values()) clearTimeout(t);
      this.restartTimers.clear();
      for (const m of this.members) this.stopMember(m);
    }
    return new Promise((resolve) => {
      if (this.members.size === 0) {
        this.unhook();
        resolve();
      } else this.stopWaiters.push(resolve);
    });
  }

  private serving(slot: number): Member | undefined {
    return [...this.members].find((m) => m.slot === slot && m.role === 'serving');
  }

  private launch(slot: number, role: Role, why: 'start' | 'restart' | 'deploy'): Member {
    const o = this.o;
    const m = Member.launch({
      controlPath: o.broker.controlPath, command: o.command, args: o.args ?? [], contract: o.contract, spare: false, slot,
      env: o.env ?? process.env, output: (pid, stream, chunk) => this.emit('output', pid, stream, chunk),
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
    m.child.on('error', (err) => { if (m.child.pid === undefined) onExit(null, null, err); });
    m.child.on('exit', (code, signal) => onExit(code, signal));
    if (m.pid > 0) {
      this.emit('spawn', m.pid, role, why);
      this.armReadyTimer(m);
    }
    return m;
  }

  private armReadyTimer(m: Member): void {
    const ms = this.o.readyTimeoutMs ?? DEFAULT_RUN_READY_TIMEOUT_MS;
    m.readyTimer = setTimeout(() => {
      if (m.ready || !m.alive || m.stopRequested) return;
      this.emit('readyTimeout', m.pid, ms);
      if (m.role === 'candidate') m.stopRequested = true;
      this.stopMember(m, m.role !== 'candidate');
    }, ms);
  }

  private stopMember(m: Member, asCrash = false): void {
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

  private memberOfPid(pid: number): Member | undefined {
    const mine = [...this.members];
    return mine.find((m) => m.pid === pid) ?? mine.find((m) => m.generation === undefined && inTree(pid, m.pid));
  }

  private memberOfGeneration(n: number): Member | undefined {
    return [...this.members].find((m) => m.generation === n);
  }

  private onJoin(g: GenerationInfo): void {
    const m = this.memberOfPid(g.pid);
    if (m && m.generation === undefined) m.generation = g.number;
  }

  private onReady(g: GenerationInfo, retire: number[]): void {
    for (const n of retire) {
      const old = this.memberOfGeneration(n);
      if (old) old.role = 'retiring';
    }
    const m = this.memberOfGeneration(g.number) ?? this.memberOfPid(g.pid);
    if (!m) return;
    m.generation ??= g.number;
    m.ready = true;
    clearTimeout(m.readyTimer);
    const wasCandidate = m.role === 'candidate';
    m.role = 'serving';
    for (const other of this.members) if (other !== m && other.slot === m.slot && other.role === 'serving') other.role = 'retiring';
    this.emit('ready', m.pid, g.number, this.now() - m.startedAt);
    if (wasCandidate && this.roll?.slot === m.slot) this.rollOn(m, g.number);
  }

  /** Slot `m.slot` is replaced: the next one starts, or the deploy is done. */
  private rollOn(m: Member, generation: number): void {
    const roll = this.roll!;
    const next = roll.slot + 1;
    if (next >= this.o.instances || this.stopping) {
      this.roll = undefined;
      this.emit('deployed', m.pid, generation, this.now() - roll.startedAt);
      return;
    }
    roll.slot = next;
    // A slot that restarts now (its process crashed meanwhile) gets the new code from that restart: go on past it.
    if (!this.serving(next)) {
      this.rollOn(m, generation);
      return;
    }
    this.launch(next, 'candidate', 'deploy');
  }

  private onRollback(e: RollbackEvent): void {
    if (e.resumed !== undefined) {
      const back = this.memberOfGeneration(e.resumed);
      if (back) {
        for (const other of this.members) if (other !== back && other.slot === back.slot && other.role === 'serving') other.role = 'retiring';
        back.role = 'serving';
        clearTimeout(this.restartTimers.get(back.slot));
        this.restartTimers.delete(back.slot);
        this.emit('resumed', back.pid, e.resumed);
      }
    }
    // Alive but failed (it stopped accepting, or hung): stop it; its slot is restarted unless the broker resumed one.
    const failed = this.memberOfGeneration(e.failed.number);
    if (failed && failed.alive && e.reason !== 'left') {
      const wasServing = failed.role === 'serving';
      failed.role = 'retiring';
      this.stopMember(failed);
      if (wasServing && e.resumed === undefined && !this.stopping) this.launch(failed.slot, 'serving', 'restart');
    }
  }

  private onReadyOverdue(g: GenerationInfo): void {
    const m = this.memberOfGeneration(g.number);
    if (!m || m.ready || m.stopRequested) return;
    this.emit('readyTimeout', m.pid, this.now() - m.startedAt);
    if (m.role === 'candidate') m.stopRequested = true;
    this.stopMember(m, m.role !== 'candidate');
  }

  private onExit(m: Member, exit: ExitInfo): void {
    this.members.delete(m);
    m.clearTimers();
    const tail = m.tail.text();
    if (this.stopping) {
      if (this.members.size === 0) {
        this.unhook();
        for (const w of this.stopWaiters.splice(0)) w();
      }
      return;
    }
    if (m.role === 'retiring') {
      this.emit('retired', exit);
      return;
    }
    if (m.role === 'candidate') {
      this.roll = undefined;
      this.emit('deployFailed', m.pid, m.stopRequested ? `was not ready within ${this.o.readyTimeoutMs ?? DEFAULT_RUN_READY_TIMEOUT_MS} ms and was stopped (it then ${exit.text})` : exit.text, tail);
      // The slot's old process died meanwhile (the candidate was to take over): start the slot anew.
      if (!this.serving(m.slot) && !this.standingBy(m.slot)) this.scheduleRestart(m.slot, 0);
      return;
    }
    // An instance died without being told to.
    const count = this.crashes.record(this.now());
    if (this.crashes.looping) {
      this.emit('crashLoop', count, this.crashes.windowMs, exit, tail);
      void this.stop();
      return;
    }
    const slot = m.slot;
    // A deploy's new process for this slot is starting: it takes over when ready.
    const candidate = [...this.members].find((x) => x.slot === slot && x.role === 'candidate');
    if (candidate) {
      this.emit('crash', exit, tail, undefined);
      return;
    }
    // The process it replaced stands by: the broker resumes it (onRollback); start anew only if it does not.
    if (this.standingBy(slot)) {
      this.emit('crash', exit, tail, undefined);
      this.scheduleRestart(slot, ROLLBACK_WAIT_MS);
      return;
    }
    const delay = restartDelay(count, this.o.backoff);
    this.emit('crash', exit, tail, delay);
    this.scheduleRestart(slot, delay);
  }

  private standingBy(slot: number): boolean {
    return this.o.broker.status().generations.some((g) => g.state === 'standby' && (g.slot ?? 0) === slot
      && this.memberOfGeneration(g.number)?.alive === true);
  }

  private scheduleRestart(slot: number, delay: number): void {
    clearTimeout(this.restartTimers.get(slot));
    const go = () => {
      this.restartTimers.delete(slot);
      if (!this.stopping && !this.serving(slot)) this.launch(slot, 'serving', 'restart');
    };
    if (delay === 0) go();
    else this.restartTimers.set(slot, setTimeout(go, delay));
  }
}
