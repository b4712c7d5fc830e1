// The broker's audit trail: one event per handout, join, rejoin, ready, reload and
// refusal, for the CLI to print and operators to keep.
export interface AuditEvent {
  op: 'connect' | 'adopt' | 'join' | 'rejoin' | 'ready' | 'status' | 'reload' | 'takeover' | 'pause' | 'unpause';
  pid: number;
  uid: number;
  gid: number;
  names?: string[];
  generation?: number;
  /** 'ok', or the ERR_FDBROKER_* code of the refusal. */
  result: string;
}

export function auditEvent(op: AuditEvent['op'], c: { pid: number; uid: number; gid: number }, result: string,
  names?: string[], generation?: number): AuditEvent {
  return { op, pid: c.pid, uid: c.uid, gid: c.gid, ...(names ? { names } : {}), ...(generation !== undefined ? { generation } : {}), result };
}
