// Generations: which connected client processes serve, and who must retire.
// Pure state, no I/O, no timers: the broker feeds it events and the current
// time, and carries out what it returns. Unit-tested without sockets.
//
// Rules:
// - Every client that joins gets the next number (1, 2, 3, ...).
// - ready(N): N serves now. The winner is the newest (highest-numbered) ready
//   generation: when N becomes ready, every connected generation older than
//   N that is not yet retiring is told to retire; if a newer generation is
//   already ready, N itself is told to retire at once.
// - A generation that leaves (exits, crashes, disconnects) before ready()
//   changes nothing: the older ones keep serving (rollback by construction).
// - A generation not ready within readyTimeoutMs is reported as overdue and
//   its later ready() is refused: it never retires anyone.
// - A generation told to retire that is still connected after retireTimeoutMs
//   is reported as overdue. The broker signals nobody (see README).

export type GenerationState = 'starting' | 'ready' | 'retiring';

export interface GenerationInfo {
  number: number;
  clientId: number;
  pid: number;
  uid: number;
  label?: string;
  state: GenerationState;
  adopted: string[];
  joinedAt: string;
  readyAt?: string;
  retiringSince?: string;
  /** Not ready within the ready timeout: its ready() will be refused. */
  readyOverdue: boolean;
  /** Told to retire and still connected after the retire timeout. */
  retireOverdue: boolean;
}

export interface GenerationTimeouts {
  readyTimeoutMs: number;
  retireTimeoutMs: number;
}

export type ReadyResult =
  | { ok: true; retire: number[] }
  | { ok: false; reason: 'unknown' | 'retiring' | 'overdue' };

interface Gen extends GenerationInfo { joinedMs: number; retiringMs?: number }

export class Generations {
  private readonly gens = new Map<number, Gen>();
  private next = 1;

  constructor(private readonly timeouts: GenerationTimeouts) {}

  /** A client joins as a new generation; returns its number. */
  join(client: { clientId: number; pid: number; uid: number; label?: string }, adopted: string[], nowMs: number, asNumber?: number): number {
    // asNumber: a broker embedded in an app continues its predecessor's numbering.
    const number = asNumber !== undefined && asNumber >= this.next ? asNumber : this.next;
    this.next = number + 1;
    this.gens.set(number, {
      number, clientId: client.clientId, pid: client.pid, uid: client.uid, label: client.label,
      state: 'starting', adopted: [...adopted], joinedAt: new Date(nowMs).toISOString(), joinedMs: nowMs,
      readyOverdue: false, retireOverdue: false,
    });
    return number;
  }

  /** Generation `n` says it serves. Returns who must retire now. */
  ready(n: number, nowMs: number): ReadyResult {
    const g = this.gens.get(n);
    if (!g) return { ok: false, reason: 'unknown' };
    this.check(nowMs);
    if (g.state === 'retiring') return { ok: false, reason: 'retiring' };
    if (g.readyOverdue) return { ok: false, reason: 'overdue' };
    if (g.state === 'ready') return { ok: true, retire: [] };
    g.state = 'ready';
    g.readyAt = new Date(nowMs).toISOString();
    const newerReady = [...this.gens.values()].some((o) => o.number > n && o.state === 'ready');
    if (newerReady) {
      this.markRetiring(g, nowMs);
      return { ok: true, retire: [n] };
    }
    const retire: number[] = [];
    for (const o of this.gens.values()) {
      if (o.number < n && o.state !== 'retiring') {
        this.markRetiring(o, nowMs);
        retire.push(o.number);
      }
    }
    return { ok: true, retire };
  }

  /** Generation `n` disconnected. Nothing else changes. */
  leave(n: number): GenerationInfo | undefined {
    const g = this.gens.get(n);
    this.gens.delete(n);
    return g ? this.info(g) : undefined;
  }

  /** Updates overdue flags; returns the generations that just became overdue. */
  check(nowMs: number): { readyOverdue: GenerationInfo[]; retireOverdue: GenerationInfo[] } {
    const out = { readyOverdue: [] as GenerationInfo[], retireOverdue: [] as GenerationInfo[] };
    for (const g of this.gens.values()) {
      if (g.state === 'starting' && !g.readyOverdue && nowMs - g.joinedMs >= this.timeouts.readyTimeoutMs) {
        g.readyOverdue = true;
        out.readyOverdue.push(this.info(g));
      }
      if (g.state === 'retiring' && !g.retireOverdue && g.retiringMs !== undefined
        && nowMs - g.retiringMs >= this.timeouts.retireTimeoutMs) {
        g.retireOverdue = true;
        out.retireOverdue.push(this.info(g));
      }
    }
    return out;
  }

  get(n: number): GenerationInfo | undefined {
    const g = this.gens.get(n);
    return g ? this.info(g) : undefined;
  }

  list(): GenerationInfo[] {
    return [...this.gens.values()].sort((a, b) => a.number - b.number).map((g) => this.info(g));
  }

  get size(): number { return this.gens.size; }

  private markRetiring(g: Gen, nowMs: number): void {
    g.state = 'retiring';
    g.retiringMs = nowMs;
    g.retiringSince = new Date(nowMs).toISOString();
  }

  private info(g: Gen): GenerationInfo {
    const { joinedMs: _j, retiringMs: _r, ...rest } = g;
    void _j; void _r;
    return { ...rest, adopted: [...g.adopted] };
  }
}
