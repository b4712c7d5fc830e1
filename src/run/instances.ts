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
import type { GenerationInfo } from '../core/generation-info';
import type { RollbackEvent } from '../broker/events';
import { restartDelay } from './backoff';
import { DEFAULT_RUN_READY_TIMEOUT_MS, ROLLBACK_WAIT_MS } from './defaults';
import type { Member, Role } from './member';
import type { ExitInfo, RunSupervisor, SupervisorOptions } from './supervisor-types';
import { SupervisorBase } from './supervisor-base';

export interface InstanceSupervisorOptions extends Omit<SupervisorOptions, 'spare'> {
  /** How many processes serve at once (2 or more; at most MAX_INSTANCES). */
  instances: number;
}

export class InstanceSupervisor extends SupervisorBase<InstanceSupervisorOptions> implements RunSupervisor {
  private readonly restartTimers = new Map<number, NodeJS.Timeout>();
  /** The deploy in flight: the slot being replaced now. */
  private roll: { slot: number; startedAt: number } | undefined;

  processes(): Array<{ pid: number; role: Role; generation: number | undefined; ready: boolean; slot: number }> {
    return [...this.members].map((m) => ({ pid: m.pid, role: m.role, generation: m.generation, ready: m.ready, slot: m.slot }));
  }

  start(): void {
    for (let slot = 0; slot < this.o.instances; slot++) this.launch('serving', 'start', slot);
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
    this.launch('candidate', 'deploy', 0);
    return true;
  }

  protected cancelTimers(): void {
    for (const t of this.restartTimers.values()) clearTimeout(t);
    this.restartTimers.clear();
  }

  private serving(slot: number): Member | undefined {
    return [...this.members].find((m) => m.slot === slot && m.role === 'serving');
  }

  protected onReady(g: GenerationInfo, retire: number[]): void {
    const m = this.markReady(g, retire);
    if (!m) return;
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
    this.launch('candidate', 'deploy', next);
  }

  protected onRollback(e: RollbackEvent): void {
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
    // Its slot is restarted unless the broker resumed one.
    const failed = this.stopFailed(e);
    if (failed) this.launch('serving', 'restart', failed.slot);
  }

  protected onMemberExit(m: Member, exit: ExitInfo, tail: string[]): void {
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
    const count = this.recordCrash(exit, tail);
    if (count === undefined) return;
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
      if (!this.stopping && !this.serving(slot)) this.launch('serving', 'restart', slot);
    };
    if (delay === 0) go();
    else this.restartTimers.set(slot, setTimeout(go, delay));
  }
}
