// The blob cache's Prometheus collectors, read from the cache at scrape time.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { BlobCache } from './store.js'

export function registerCacheMetrics (registry: Registry, cache: BlobCache): void {
  const registers = [registry]
  const s = cache.stats
  new Counter({ name: 'berth_cache_requests_total', help: 'Blob requests the cache could answer, by result (hit: a copy on disk; follow: read from a fill another download grows; miss: fetched).', labelNames: ['result'], registers, collect () { this.reset(); this.inc({ result: 'hit' }, s.hits); this.inc({ result: 'follow' }, s.followers); this.inc({ result: 'miss' }, s.misses) } })
  new Counter({ name: 'berth_cache_fills_total', help: 'Blob copies kept, by outcome (rejected: wrong digest, cut short or not written).', labelNames: ['outcome'], registers, collect () { this.reset(); this.inc({ outcome: 'kept' }, s.fills); this.inc({ outcome: 'rejected' }, s.rejected) } })
  new Counter({ name: 'berth_cache_skipped_total', help: 'Downloads not cached because their blob did not fit next to the fills in flight.', registers, collect () { this.reset(); this.inc(s.skipped) } })
  new Counter({ name: 'berth_cache_write_errors_total', help: 'Fills dropped because the cache directory could not be written.', registers, collect () { this.reset(); this.inc(s.writeErrors) } })
  new Counter({ name: 'berth_cache_evictions_total', help: 'Blob copies removed to stay within maxSize.', registers, collect () { this.reset(); this.inc(s.evictions) } })
  new Gauge({ name: 'berth_cache_bytes', help: 'Bytes of cached blobs.', registers, collect () { this.set(cache.size) } })
  new Gauge({ name: 'berth_cache_reserved_bytes', help: 'Bytes reserved by fills in flight.', registers, collect () { this.set(cache.reserved) } })
  new Gauge({ name: 'berth_cache_blobs', help: 'Cached blobs.', registers, collect () { this.set(cache.count) } })
}
