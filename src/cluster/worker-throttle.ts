// The throttle of one worker among several (workers: N) without Redis: its own counters, plus the
// lockouts the primary decides from every worker's failures (src/workers.ts), so that N workers allow what
// one would, not N times as many guesses.
import { Throttle, type ThrottleLimits } from '../auth/throttle.js'

export class WorkerThrottle extends Throttle {
  #remote = new Map<string, number>()

  constructor (limits: ThrottleLimits) {
    super(limits)
    process.on('message', (m: { berth?: string, key?: string, until?: number }) => {
      if (m.berth === 'block' && typeof m.key === 'string' && typeof m.until === 'number') this.#remote.set(m.key, m.until)
    })
  }

  override blockedFor (key: string, now = Date.now()): number {
    const until = this.#remote.get(key)
    if (until !== undefined && until <= now) this.#remote.delete(key)
    return Math.max(super.blockedFor(key, now), until !== undefined && until > now ? until - now : 0)
  }

  override fail (key: string, now = Date.now()): boolean {
    process.send?.({ berth: 'fail', key })
    return super.fail(key, now)
  }
}
