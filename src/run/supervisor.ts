// The supervisor of `fdbroker run`: runs one command as generation after
// generation of the broker in this process.
//
// Contract:
// - One process serves. When it exits without being told to (a crash, or an
//   exit nobody asked for), the next one starts at once (restartDelay(): the
//   first crash of a window restarts with no delay, later ones back off up to
//   a cap); connections made meanwhile wait in the accept queue the broker's
//   own copy of each listener keeps, and are served by the next process.
// - CRASH_LOOP_COUNT such exits within CRASH_LOOP_WINDOW_MS is a crash loop:
//   everything is stopped and 'crashLoop' is emitted (run exits non-zero, so
//   the outer supervisor sees it).
// - deploy(): a new process (the command as it is on disk now) starts beside
//   the serving one; the broker retires the old one once the new one is ready.
//   A new one that exits or is not ready in time is stopped, and the old one
//   serves on ('deployFailed', with its last lines of output). At most one
//   deploy is in flight: a second is refused, not raced.
// - With a warm spare (library apps): one more process is started, joins the
//   broker as a spare (exempt from the ready timeout) and waits, holding its
//   listeners without accepting, in startGeneration() (run-env.ts) until it
//   is promoted: the moment the serving one dies, run writes one byte to it,
//   and it attaches, accepts and says ready. A new spare is started
//   SPARE_REPLACE_DELAY_MS after the promoted one is ready (and after each
//   deploy, so the spare runs the deployed code).
// - stop(): every process is sent SIGTERM once (exec wrappers pass it to their
//   program; library apps drain on it), SIGKILL after the stop timeout;
//   resolves when all have exited.
//
// Which generation is whose: the broker's 'join' event names the joining pid;
// it belongs to the started process whose pid it is, or a descendant of it
// (a wrapper such as `fdbroker exec`, `npm start`, `sh -c`).
//
// Library code: it never prints; the CLI (cli/run.ts) reports the events.
import type { GenerationInfo } from '../core/generation-info';
import type { RollbackEvent } from '../broker/events';
import { restartDelay } from './backoff';
import { DEFAULT_RUN_READY_TIMEOUT_MS, ROLLBACK_WAIT_MS, SPARE_REPLACE_DELAY_MS } from './defaults';
import type { Member, Role } from './member';
import { SupervisorBase } from './supervisor-base';

export type { ExitInfo, RunSupervisor, SupervisorEvents, SupervisorOptions } from './supervisor-types';
import type { ExitInfo, RunSupervisor, SupervisorOptions } from './supervisor-types';

export class Supervisor extends SupervisorBase<SupervisorOptions> implements RunSupervisor {
  private restartTimer: NodeJS.Timeout | undefined;
  private rollbackTimer: NodeJS.Timeout | undefined;
  private spareTimer: NodeJS.Timeout | undefined;

  /** The processes run has now, by role (for tests and status lines). */
  processes(): Array<{ pid: number; role: Role; generation: number | undefined; ready: boolean }> {
    return [...this.members].map((m) => ({ pid: m.pid, role: m.role, generation: m.generation, ready: m.ready }));
  }

  /** Starts the first process. */
  start(): void {
    this.launch('serving', 'start');
  }

  /** Starts the command anew beside the serving process; false (and 'deployRefused') when one is in flight or run stops. */
  deploy(): boolean {
    if (this.stopping) {
      this.emit('deployRefused', 'stopping');
      return false;
    }
    const inFlight = [...this.members].find((m) => m.role === 'candidate' || (m.role === 'serving' && !m.ready));
    if (inFlight) {
      this.emit('deployRefused', `pid ${inFlight.pid} is starting and not ready yet`);
      return false;
    }
    // Nobody serves (a restart waits out its backoff): the deploy is that restart, now.
    const serving = this.serving();
    if (!serving) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      this.launch('serving', 'deploy');
      return true;
    }
    this.launch('candidate', 'deploy');
    return true;
  }

  protected cancelTimers(): void {
    clearTimeout(this.restartTimer);
    clearTimeout(this.rollbackTimer);
    clearTimeout(this.spareTimer);
  }

  private serving(): Member | undefined {
    return [...this.members].find((m) => m.role === 'serving');
  }

  private spare(): Member | undefined {
    return [...this.members].find((m) => m.role === 'spare');
  }

  protected onReady(g: GenerationInfo, retire: number[]): void {
    const m = this.markReady(g, retire);
    if (!m) return;
    // A promoted spare: from its promotion (it had been waiting, warm, since its start).
    const ms = this.now() - (m.promotedAt ?? m.startedAt);
    const wasCandidate = m.role === 'candidate';
    const wasPromoted = m.promoted;
    m.role = 'serving';
    // Any other process still taken for serving (the broker retired it above, or it is about to leave) no longer is.
    for (const other of this.members) if (other !== m && other.role === 'serving') other.role = 'retiring';
    this.emit('ready', m.pid, g.number, ms);
    if (wasCandidate) {
      this.emit('deployed', m.pid, g.number, ms);
      // The spare runs the old code: replace it.
      const old = this.spare();
      if (old) {
        old.role = 'retiring';
        this.stopMember(old);
      }
    }
    if (wasPromoted) this.scheduleSpare(SPARE_REPLACE_DELAY_MS);
    else this.ensureSpare();
  }

  protected onRollback(e: RollbackEvent): void {
    // The serving process left unretired: it died (its connection closed as
    // the kernel closed its fds, before run hears of the exit). Promote the
    // spare now rather than at the exit, a few ms to tens of ms later.
    const gone = this.memberOfGeneration(e.failed.number);
    const spare = this.spare();
    if (e.reason === 'left' && gone?.role === 'serving' && spare && !this.stopping && e.resumed === undefined) {
      gone.replaced = true;
      gone.role = 'retiring';
      spare.promote(this.now());
      this.armReadyTimer(spare);
      this.emit('promote', spare.pid);
      return;
    }
    if (e.resumed !== undefined) {
      const back = this.memberOfGeneration(e.resumed);
      if (back) {
        clearTimeout(this.rollbackTimer);
        for (const other of this.members) if (other !== back && other.role === 'serving') other.role = 'retiring';
        back.role = 'serving';
        this.emit('resumed', back.pid, e.resumed);
      }
    }
    if (this.stopFailed(e)) this.replaceServing();
  }

  protected onMemberExit(m: Member, exit: ExitInfo, tail: string[]): void {
    if (m.replaced) {
      // Already replaced by the spare (onRollback): a crash all the same.
      if (this.recordCrash(exit, tail) !== undefined) this.emit('crash', exit, tail, undefined);
      return;
    }
    // Told to leave (retired by the broker, a spare replaced after a deploy): no crash.
    if (m.role === 'retiring' || (m.role === 'spare' && m.stopRequested)) {
      this.emit('retired', exit);
      return;
    }
    if (m.role === 'candidate') {
      this.emit('deployFailed', m.pid, m.stopRequested ? `was not ready within ${this.o.readyTimeoutMs ?? DEFAULT_RUN_READY_TIMEOUT_MS} ms and was stopped (it then ${exit.text})` : exit.text, tail);
      return;
    }
    // An unrequested exit of the serving process or the spare.
    const count = this.recordCrash(exit, tail);
    if (count === undefined) return;
    if (m.role === 'spare') {
      const delay = restartDelay(count, this.o.backoff);
      this.emit('crash', exit, tail, delay);
      this.scheduleSpare(delay);
      return;
    }
    // The serving process died.
    const spare = this.spare();
    if (spare) {
      spare.promote(this.now());
      this.armReadyTimer(spare);
      this.emit('crash', exit, tail, undefined);
      this.emit('promote', spare.pid);
      return;
    }
    // A deploy's new version is starting: it takes over when ready (connections wait meanwhile).
    if ([...this.members].some((x) => x.role === 'candidate')) {
      this.emit('crash', exit, tail, undefined);
      for (const x of this.members) if (x.role === 'candidate') x.role = 'serving';
      return;
    }
    // The process it replaced stands by: the broker resumes it (see onRollback); start anew only if it does not.
    if (this.standingBy()) {
      this.emit('crash', exit, tail, undefined);
      clearTimeout(this.rollbackTimer);
      this.rollbackTimer = setTimeout(() => { if (!this.serving() && !this.stopping) this.replaceServing(); }, ROLLBACK_WAIT_MS);
      return;
    }
    const delay = restartDelay(count, this.o.backoff);
    this.emit('crash', exit, tail, delay);
    this.scheduleRestart(delay);
  }

  /** Whether one of run's processes is a generation standing by (it can be resumed). */
  private standingBy(): boolean {
    const s = this.o.broker.status();
    return s.generations.some((g) => g.state === 'standby' && this.memberOfGeneration(g.number)?.alive === true);
  }

  private replaceServing(): void {
    const spare = this.spare();
    if (spare) {
      spare.promote(this.now());
      this.armReadyTimer(spare);
      this.emit('promote', spare.pid);
      return;
    }
    this.launch('serving', 'restart');
  }

  private scheduleRestart(delay: number): void {
    clearTimeout(this.restartTimer);
    const go = () => {
      this.restartTimer = undefined;
      if (!this.stopping && !this.serving()) this.launch('serving', 'restart');
    };
    if (delay === 0) go();
    else this.restartTimer = setTimeout(go, delay);
  }

  /** With --spare: one spare, started once something serves and is ready. */
  private ensureSpare(): void {
    if (!this.o.spare || this.stopping || this.spare() || this.spareTimer) return;
    const s = this.serving();
    if (!s?.ready) return;
    this.launch('spare', 'spare');
  }

  private scheduleSpare(delay: number): void {
    clearTimeout(this.spareTimer);
    this.spareTimer = setTimeout(() => {
      this.spareTimer = undefined;
      this.ensureSpare();
    }, delay);
  }
}
