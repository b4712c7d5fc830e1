// The answers a BrokerConnection collects, one collector per request (matched
// by id): a single reply, the parts of "listeners", "status" and a takeover's
// "handoff" then "listeners". And the checks that refuse a malformed request
// before anything is sent (ERR_FDBROKER_INVALID_ARGUMENT).
//
// Fd ownership: a "listeners" collector owns the fds of the parts it took
// until it returns them; on failure (abandon(), or a part out of order) it
// closes every one.
import { FdbrokerError } from '../protocol/errors';
import { isValidName, type BrokerMessage, type HandoffMessage, type ListenerInfo, type StatusMessage } from '../protocol/messages';
import { MAX_GENERATION, MAX_LABEL_BYTES, MAX_NAME_BYTES, MAX_NAMES_PER_REQUEST, MAX_STANDBY_MS } from '../protocol/limits';
import { closeAll } from './handshake';

/** A listener received from the broker: what it announced, and the fd (owned by whoever it is returned to). */
export interface ReceivedListener { info: ListenerInfo; fd: number }

/**
 * One request in flight, matched to its answers by `id`. take() gets every
 * message with this id: it returns the value once the answer is complete,
 * undefined while more parts are due, and throws on a message that cannot
 * be part of it (the stream is then out of step: the connection fails).
 * abandon() closes whatever fds it collected.
 */
export interface InFlight {
  take(msg: BrokerMessage, fds: number[]): unknown;
  abandon(): void;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export function invalid(message: string): FdbrokerError {
  return new FdbrokerError('ERR_FDBROKER_INVALID_ARGUMENT', message);
}

export const isGenerationNumber = (v: number): boolean => Number.isInteger(v) && v >= 1 && v <= MAX_GENERATION;

export function checkNames(names: string[] | undefined): void {
  if (names === undefined) return;
  if (!Array.isArray(names) || names.length > MAX_NAMES_PER_REQUEST) throw invalid(`names must be an array of at most ${MAX_NAMES_PER_REQUEST} listener names`);
  const bad = names.find((n) => !isValidName(n));
  if (bad !== undefined) throw invalid(`${JSON.stringify(bad)} is not a listener name (1..${MAX_NAME_BYTES} of letters, digits and . _ - : @)`);
}

export function checkGenerationFields(label: string | undefined, standby: number | undefined): void {
  if (label !== undefined && (typeof label !== 'string' || Buffer.byteLength(label) > MAX_LABEL_BYTES)) {
    throw invalid(`label must be a string of at most ${MAX_LABEL_BYTES} bytes`);
  }
  if (standby !== undefined && !(Number.isInteger(standby) && standby >= 0 && standby <= MAX_STANDBY_MS)) {
    throw invalid(`standby must be a whole number of ms from 0 to ${MAX_STANDBY_MS}`);
  }
}

/** A one-message answer of type `type`. */
export function replyOf<T extends BrokerMessage['type']>(type: T): InFlight['take'] {
  return (msg) => {
    if (msg.type !== type) throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected "${type}" for request ${(msg as { id?: number }).id}, got "${msg.type}"`);
    return msg;
  };
}

/** The parts of a "listeners" answer (adopt, join), in order; on failure every fd received is closed. */
export function listenersAnswer(): InFlight['take'] & { abandon: () => void } {
  const out: ReceivedListener[] = [];
  let generation: number | undefined;
  let epoch: number | undefined;
  let expectPart = 0;
  const abandon = () => closeAll(out.splice(0).map((l) => l.fd));
  const take = (msg: BrokerMessage, fds: number[]): unknown => {
    if (msg.type !== 'listeners' || msg.part !== expectPart) {
      closeAll(fds);
      abandon();
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected part ${expectPart} of listeners ${(msg as { id?: number }).id}, got "${msg.type}"`);
    }
    expectPart++;
    msg.listeners.forEach((info, i) => out.push({ info, fd: fds[i]! }));
    if (msg.generation !== undefined) generation = msg.generation;
    if (msg.epoch !== undefined) epoch = msg.epoch;
    return msg.last ? { generation, epoch, listeners: out } : undefined;
  };
  return Object.assign(take, { abandon });
}

/** The parts of a "status" answer, put together. */
export function statusAnswer(): InFlight['take'] {
  let whole: StatusMessage | undefined;
  let expectPart = 0;
  return (msg, fds) => {
    closeAll(fds);
    if (msg.type !== 'status' || (msg.part ?? 0) !== expectPart) {
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected part ${expectPart} of status ${(msg as { id?: number }).id}, got "${msg.type}"`);
    }
    expectPart++;
    if (!whole) whole = { ...msg, listeners: [...msg.listeners], clients: [...msg.clients], generations: [...msg.generations] };
    else {
      whole.listeners.push(...msg.listeners);
      whole.clients.push(...msg.clients);
      whole.generations.push(...msg.generations);
    }
    if (msg.last === false) return undefined;
    delete whole.part;
    delete whole.last;
    return whole;
  };
}

/** A takeover's answer: "handoff" parts, then "listeners" parts, with the same id. */
export function handoffAnswer(): InFlight['take'] & { abandon: () => void } {
  let handoff: HandoffMessage | undefined;
  let handoffDone = false;
  let expectPart = 0;
  const listeners = listenersAnswer();
  const take = (msg: BrokerMessage, fds: number[]): unknown => {
    if (handoffDone) {
      const r = listeners(msg, fds) as { listeners: ReceivedListener[] } | undefined;
      return r && { handoff, listeners: r.listeners };
    }
    closeAll(fds);
    if (msg.type !== 'handoff' || msg.part !== expectPart) {
      throw new FdbrokerError('ERR_FDBROKER_PROTOCOL', `expected part ${expectPart} of handoff ${(msg as { id?: number }).id}, got "${msg.type}"`);
    }
    expectPart++;
    if (!handoff) handoff = { ...msg, generations: [...msg.generations] };
    else handoff.generations.push(...msg.generations);
    if (msg.last) handoffDone = true;
    return undefined;
  };
  return Object.assign(take, { abandon: listeners.abandon });
}
