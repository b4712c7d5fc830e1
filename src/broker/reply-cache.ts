// The encoded error replies of refusals at accept, kept so that a flood of
// connections refused for the same reason encodes its reply once (and the
// acceptor answers them as one group). Bounded: the reasons name uids, so
// the cache is emptied once it holds REPLY_CACHE_MAX of them.
import { encodeError } from '../protocol/messages';
import type { Refusal } from './admission';

/** The most distinct refusal replies kept (one per uid and reason in practice). */
export const REPLY_CACHE_MAX = 256;

export class ReplyCache {
  private readonly replies = new Map<string, Buffer>();

  /** The encoded `error` message for `r`: the same Buffer for the same code and message. */
  get(r: Refusal): Buffer {
    const key = `${r.code}\0${r.message}`;
    let reply = this.replies.get(key);
    if (reply === undefined) {
      if (this.replies.size >= REPLY_CACHE_MAX) this.replies.clear();
      reply = encodeError({ type: 'error', code: r.code, message: r.message });
      this.replies.set(key, reply);
    }
    return reply;
  }
}
