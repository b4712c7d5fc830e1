// One connected client of the broker: its credentials, its channel, and what
// it has become (greeted, a generation). Sending never throws: a reply that
// cannot be encoded is replaced by a bounded internal error, and a client
// that cannot take a message is dropped. One client's trouble ends that
// client only, never the broker.
import type { Channel } from '../transport/channel';
import { encode, encodeError, encodeStatus, type BrokerMessage, type ClientInfo } from '../protocol/messages';

export class Session {
  greeted = false;
  generation: number | undefined;
  /**
   * The last message sent carried fds (a handout). Then, and only then,
   * unread bytes (SIOCOUTQ) mean an unread handout: messages are read in
   * order, so a handout followed by notices (retire, resume, ping) the client
   * has not read yet may well have been read itself.
   */
  lastSentFds = false;
  /** It said "leaving": its connection's end is a planned stop, not a crash. */
  leaving = false;
  /** It joined with `pause`: it stops and starts accepting when told ("accepting"). */
  pausable = false;

  constructor(readonly info: ClientInfo, readonly channel: Channel, private readonly onSendError: (err: Error) => void) {}

  /** Sends a message (in parts where it must be); returns false if the client was dropped. */
  reply(msg: BrokerMessage): boolean {
    let payloads: Buffer[];
    try {
      payloads = msg.type === 'error' ? [encodeError(msg)] : msg.type === 'status' ? encodeStatus(msg) : [encode(msg)];
    } catch (err) {
      // A bug, not the client's fault: answer with a bounded error instead of ending the broker.
      this.onSendError(err as Error);
      payloads = [encodeError({
        type: 'error', ...('id' in msg && typeof msg.id === 'number' ? { id: msg.id } : {}),
        code: 'ERR_FDBROKER_INTERNAL', message: `the broker could not encode its ${msg.type} reply: ${(err as Error).message}`,
      })];
    }
    for (const p of payloads) if (!this.send(p, [])) return false;
    return true;
  }

  /** Sends an encoded message with fds (the caller keeps owning them); false if the client was dropped. */
  send(payload: Buffer, fds: number[]): boolean {
    try {
      this.channel.send(payload, fds);
      this.lastSentFds = fds.length > 0;
      return !this.channel.isClosed;
    } catch (err) {
      this.onSendError(err as Error);
      this.channel.close();
      return false;
    }
  }
}
