// The read buffers of downloads, and V8's collector.
//
// Every socket read (a TLS record from the client, a TCP read or TLS record from the registry) lands in
// a fresh buffer outside V8's heap. V8 frees a dead one only when it collects the small object that
// points at it, and it collects when its own heap fills: a body streaming through berth allocates
// hundreds of MB of buffers and next to nothing on the heap, so the dead buffers pile up until V8's limit
// for outside memory (64 MB over the last full collection) makes it run a full mark-compact. That was a
// fifth of a download's CPU and most of berth's peak memory while streaming.
//
// berth asks for a young-generation collection (a scavenge: it visits only what is alive in the young
// generation, a fraction of a millisecond) every `step` bytes downloaded. The buffers of chunks already
// written die young and go with it; no full collection is needed.
//
// The bytes are counted where every download passes, undici's diagnostics channel for a chunk received
// from the registry. Uploads are left to V8: it scavenges often enough on its own while one streams (8-22
// times per 250 MB, for what pausing and resuming the client's stream allocates on its heap), with no
// full collection; scavenges asked for on top of those sent some processes into a mark-compact after
// nearly every one (25-31 per 250 MB upload, twice the CPU) while others ran none. The collector is V8's `gc`
// (exposed at run time, which `node --expose-gc` would do at start); where it cannot be had, nothing
// changes. Cached copies need none of this: they are read from disk into reused buffers
// (src/cache/serve.ts).
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Collect = (options?: { type?: 'major' | 'minor' }) => void

/** V8's collector, or null (a runtime without `--expose-gc`). */
export function v8Collector (): Collect | null {
  try {
    setFlagsFromString('--expose-gc')
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : null')
    return typeof gc === 'function' ? gc as Collect : null
  } catch {
    return null
  }
}

/** Bytes downloaded between two scavenges: well under V8's 64 MB, well over one read. */
export const SCAVENGE_STEP = 8 << 20

const CHANNEL = 'undici:request:bodyChunkReceived'

export class BufferCollector {
  readonly #collect: Collect
  readonly #step: number
  #bytes = 0
  /** Scavenges asked for, for the tests and the curious. */
  scavenges = 0

  constructor (collect: Collect, step = SCAVENGE_STEP) {
    this.#collect = collect
    this.#step = step
  }

  /** `bytes` more of a downloaded body went through a socket read. */
  note (bytes: number): void {
    this.#bytes += bytes
    if (this.#bytes < this.#step) return
    this.#bytes %= this.#step
    this.scavenges++
    this.#collect({ type: 'minor' })
  }

  readonly #onChunk = (message: unknown): void => {
    const chunk = (message as { chunk?: { length?: unknown } }).chunk
    if (typeof chunk?.length === 'number') this.note(chunk.length)
  }

  /** Counts every body chunk undici receives, until `stop`. */
  watchUndici (): () => void {
    subscribe(CHANNEL, this.#onChunk)
    return () => { unsubscribe(CHANNEL, this.#onChunk) }
  }
}

let started = false

/**
 * Counts the bodies undici receives and has V8 scavenge every SCAVENGE_STEP bytes, for the rest of the
 * process (however many servers it runs; a second call does nothing).
 */
export function collectReadBuffers (): void {
  if (started) return
  started = true
  const gc = v8Collector()
  if (gc !== null) new BufferCollector(gc).watchUndici()
}
