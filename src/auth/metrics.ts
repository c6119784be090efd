// Authentication's Prometheus collectors, read at scrape time.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { AuthState } from '../types.js'

export function registerAuthMetrics (registry: Registry, state: () => AuthState): void {
  const registers = [registry]
  new Counter({ name: 'berth_auth_total', help: 'Credential checks by result.', labelNames: ['result'], registers, collect () { this.reset(); const s = state().stats; this.inc({ result: 'success' }, s.successes); this.inc({ result: 'failure' }, s.failures); this.inc({ result: 'throttled' }, s.throttled) } })
  new Gauge({ name: 'berth_auth_throttled_clients', help: 'Client addresses blocked by brute-force throttling now.', registers, collect () { this.set(state().throttle.blocked()) } })
}
