// What one peer may see of `status`: the listeners its grants name, and no
// other listener's name anywhere in the answer (the listener list, what each
// client and generation adopted). Pure. The broker, clients and generations
// themselves are shown to every peer with a status grant; the owner sees all.
import type { StatusMessage } from '../protocol/messages';
import { inScope, type NameScope } from './grants';

export function scopeStatus(s: StatusMessage, scope: NameScope): StatusMessage {
  if (scope.all) return s;
  const keep = (names: string[]) => names.filter((n) => inScope(scope, n));
  return {
    ...s,
    listeners: s.listeners.filter((l) => inScope(scope, l.name)),
    clients: s.clients.map((c) => ({ ...c, adopted: keep(c.adopted) })),
    generations: s.generations.map((g) => ({ ...g, adopted: keep(g.adopted) })),
  };
}
