// Brute-force throttling per client address and per user: `failures` failed logins from one address (or
// `userFailures` for one user name, from anywhere) inside `window` block it for `block`. A blocked address
// is answered before any password is hashed. Keys: the address itself, or `u:` and the user name.
// In a cluster, src/cluster/state.ts shares the counts and the lockouts between replicas.

interface Record { count: number, windowStart: number, blockedUntil: number }

export interface ThrottleLimits { failures: number, userFailures: number, window: number, block: number }

export class Throttle {
  failures: number
  userFailures: number
  window: number
  block: number
  #byAddress = new Map<string, Record>()

  constructor (opts: ThrottleLimits) {
    this.failures = opts.failures
    this.userFailures = opts.userFailures
    this.window = opts.window
    this.block = opts.block
  }

  /** New limits (a reload); the counters stay. */
  update (opts: ThrottleLimits): void {
    this.failures = opts.failures
    this.userFailures = opts.userFailures
    this.window = opts.window
    this.block = opts.block
  }

  /** Milliseconds the address stays blocked (0 = not blocked). */
  blockedFor (address: string, now = Date.now()): number {
    const r = this.#byAddress.get(address)
    // Stryker disable next-line EqualityOperator: equivalent, at blockedUntil both sides give 0
    return r === undefined || r.blockedUntil <= now ? 0 : r.blockedUntil - now
  }

  /** Counts one failure; true when this failure blocked the address (or user). */
  fail (address: string, now = Date.now()): boolean {
    const limit = address.startsWith('u:') ? this.userFailures : this.failures
    if (limit === 0) return false
    let r = this.#byAddress.get(address)
    if (r === undefined || now - r.windowStart >= this.window) {
      if (this.#byAddress.size >= 100_000) this.#prune(now)
      r = { count: 0, windowStart: now, blockedUntil: r?.blockedUntil ?? 0 }
      this.#byAddress.set(address, r)
    }
    r.count++
    if (r.count >= limit && r.blockedUntil <= now) {
      r.blockedUntil = now + this.block
      r.count = 0
      r.windowStart = now
      return true
    }
    return false
  }

  /** Addresses with failures or a block on record (bounded: past 100,000 the expired ones go). */
  get tracked (): number { return this.#byAddress.size }

  /** Addresses blocked right now (for the status page and metrics). */
  blocked (now = Date.now()): number {
    let n = 0
    for (const r of this.#byAddress.values()) if (r.blockedUntil > now) n++
    return n
  }

  #prune (now: number): void {
    for (const [a, r] of this.#byAddress) {
      if (r.blockedUntil <= now && now - r.windowStart >= this.window) this.#byAddress.delete(a)
    }
  }
}
