// The upstream pool's Prometheus collectors, read from the pool in force at scrape time.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { UpstreamPool } from './pool.js'

export function registerPoolMetrics (registry: Registry, pool: () => UpstreamPool): void {
  const rows = () => pool().snapshot()
  const labelNames = ['upstream'] as const
  const registers = [registry]
  new Gauge({ name: 'berth_upstream_up', help: 'Upstream state from the health probes (1 up, 0 down).', labelNames, registers, collect () { this.reset(); for (const s of rows()) this.set({ upstream: s.url }, s.state === 'up' ? 1 : 0) } })
  new Gauge({ name: 'berth_upstream_available', help: 'Whether the upstream takes requests now (probes and passive failures).', labelNames, registers, collect () { this.reset(); for (const s of rows()) this.set({ upstream: s.url }, s.available ? 1 : 0) } })
  new Gauge({ name: 'berth_upstream_active_requests', help: 'Requests in flight per upstream.', labelNames, registers, collect () { this.reset(); for (const s of rows()) this.set({ upstream: s.url }, s.active) } })
  new Counter({ name: 'berth_upstream_requests_total', help: 'Requests sent per upstream (attempts, retries and resumes included).', labelNames, registers, collect () { this.reset(); for (const s of rows()) this.inc({ upstream: s.url }, s.requests) } })
  new Counter({ name: 'berth_upstream_failures_total', help: 'Connection errors, timeouts, invalid responses and bodies that did not match their digest, per upstream.', labelNames, registers, collect () { this.reset(); for (const s of rows()) this.inc({ upstream: s.url }, s.failures) } })
  new Gauge({ name: 'berth_upstream_probe_seconds', help: 'Duration of the last health probe per upstream.', labelNames, registers, collect () { this.reset(); for (const s of rows()) if (s.lastProbe !== null) this.set({ upstream: s.url }, s.lastProbe.ms / 1000) } })
}
