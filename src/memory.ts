// The read buffers of transfers, V8's collector, and the compiler of undici's parser.
//
// Every socket read (a TLS record from the client, a TCP read or TLS record from the registry) lands in
// a fresh buffer outside V8's heap. V8 frees a dead one only when it collects the small object that
// points at it, and it collects when its own heap fills: a body streaming through berth allocates
// hundreds of MB of buffers and next to nothing on the heap, so the dead buffers pile up until V8's limit
// for outside memory (64 MB over the last full collection) makes it run a full mark-compact. That was a
// fifth of a download's CPU and most of berth's peak memory while streaming.
//
// berth asks for a young-generation collection (a scavenge: it visits only what is alive in the young
// generation, a fraction of a millisecond) every `step` bytes streamed. The buffers of chunks already
// written die young and go with it; no full collection is needed.
//
// The bytes are counted where every transfer passes, undici's diagnostics channels for a chunk received
// from the registry (downloads) and a chunk sent to it (uploads: the client's records, read into fresh
// buffers the same way). Left to V8, uploads ran full collections in bursts: 81 in 32 uploads of 250 MB
// (up to 9 in one, each about 20 ms of marking) against 2 with the scavenges, and 0.52-0.58 s of CPU per
// monolithic upload against 0.58-0.69 (three alternated runs). The collector is V8's `gc` (exposed at run
// time, which `node --expose-gc` would do at start); where it cannot be had, nothing changes. Cached
// copies need none of this: they are read from disk into reused buffers (src/cache/serve.ts).
//
// The old generation's room. After each full collection V8 sets the next limit for its old generation
// at the live size times a factor it derives from how fast the program allocates there against how fast
// it collects; and it starts marking as soon as the room left under that limit is smaller than its young
// generation (16 MB per half once busy). A proxy streaming bodies allocates almost nothing in the old
// generation, so a full collection taken while bodies stream (after a pause, or from the outside-memory
// limit) set a factor of about 1.5: 16 MB alive, a limit of 26 MB, 10 MB of room, less than the young
// generation. From then on V8 marked after every scavenge and ran a mark-compact every 50-150 ms that
// freed nothing (16.5 -> 16.5 MB): up to 31 per 250 MB upload and up to twice the CPU, in most berth
// processes that had sat idle (the scavenges once asked for during uploads led there too). A fixed
// factor of 2.5 (`--heap-growing-percent=150`, read by V8 each time it sets the limit, so it can be set
// once berth runs) leaves 24 MB of room over 16 MB alive: no such storm in 10 idle berths of 10. V8's own
// factor goes up to 4 where the program allocates fast in the old generation; 4 always (300) raised
// berth's peak through transfers and authenticated load from 61 to 93 MB over idle. With the young
// generation capped at 8 MB a half (`--max-semi-space-size=8`, as the Docker image runs berth), a factor
// of 2 (100) leaves as much room as is alive, still more than the young generation, and holds the old
// generation's peak 4-6 MB lower. An operator who gives node the flag on its command line keeps theirs.
//
// undici's HTTP parser (llhttp) is WebAssembly. Once it is hot, V8 recompiles it with its optimizing
// compiler, and that one compilation takes 28-40 MB of malloc for a few hundred milliseconds at the first
// transfer: more than half of berth's peak over idle through 250 MB transfers. Parsing with the baseline
// compiler's code alone (no tier-up: `--no-wasm-tier-up --no-wasm-dynamic-tiering`) costs a proxy little:
// the same CPU per download (less, without the compilation), 2-4 % more per proxied small request against
// an upstream answering from memory. V8 reads the flags when it compiles a module, and undici compiles
// its parser at its first connection: berth sets them before it opens any (set after that, they changed
// nothing). An operator who gives node a flag of that family on its command line keeps theirs.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { gave, nodeArgs } from './node-args.js'

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

/** Bytes streamed between two scavenges: well under V8's 64 MB, well over one read. */
export const SCAVENGE_STEP = 8 << 20

const CHANNELS = ['undici:request:bodyChunkReceived', 'undici:request:bodyChunkSent']

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

  /** Counts every body chunk undici receives or sends, until `stop`. */
  watchUndici (): () => void {
    for (const name of CHANNELS) subscribe(name, this.#onChunk)
    return () => { for (const name of CHANNELS) unsubscribe(name, this.#onChunk) }
  }
}

/** Old generation limit = live size x (1 + HEAP_GROWING_PERCENT / 100); with the young generation capped at 8 MB or less, HEAP_GROWING_PERCENT_CAPPED. */
export const HEAP_GROWING_PERCENT = 150
export const HEAP_GROWING_PERCENT_CAPPED = 100
/** The largest young generation (MB a half) for which HEAP_GROWING_PERCENT_CAPPED leaves enough room. */
export const CAPPED_SEMI_SPACE_MB = 8

/** `--max-semi-space-size` as node was given it (its command line, then NODE_OPTIONS), in MB; null: V8's default. */
export function maxSemiSpaceMB (execArgv: readonly string[], nodeOptions = ''): number | null {
  let found: number | null = null
  const args = nodeArgs(execArgv, nodeOptions) // the command line wins: read last
  for (let i = 0; i < args.length; i++) {
    const m = /^--max[-_]semi[-_]space[-_]size(?:=(.*))?$/.exec(args[i])
    if (m === null) continue
    const value = Number(m[1] ?? args[i + 1])
    if (Number.isFinite(value) && value > 0) found = value
  }
  return found
}

/**
 * The V8 flag berth sets for the old generation's room, or null when the operator gave node one (on its
 * command line: NODE_OPTIONS may not carry it).
 */
export function heapGrowingFlag (execArgv: readonly string[], nodeOptions = ''): string | null {
  if (gave(nodeArgs(execArgv, nodeOptions), /^--heap[-_]growing[-_]percent(=|$)/)) return null
  const semi = maxSemiSpaceMB(execArgv, nodeOptions)
  return `--heap-growing-percent=${semi !== null && semi <= CAPPED_SEMI_SPACE_MB ? HEAP_GROWING_PERCENT_CAPPED : HEAP_GROWING_PERCENT}`
}

/**
 * The V8 flags that keep WebAssembly on the baseline compiler (Liftoff), or none when the operator chose
 * how. Not `--liftoff-only`, which implies the same but stops the process where Liftoff cannot compile
 * a function (a CPU feature it lacks): without it V8 uses its optimizing compiler for such a function.
 */
export function baselineWasmFlags (execArgv: readonly string[], nodeOptions = ''): string[] {
  return gave(nodeArgs(execArgv, nodeOptions), /^--(no-?)?(liftoff|liftoff[-_]only|wasm[-_]tier[-_]up|wasm[-_]dynamic[-_]tiering)(=|$)/) ? [] : ['--no-wasm-tier-up', '--no-wasm-dynamic-tiering']
}

let started = false

/**
 * For the rest of the process (however many servers it runs; a second call does nothing): counts the
 * bodies undici receives and sends and has V8 scavenge every SCAVENGE_STEP bytes, gives the old
 * generation its room, and keeps undici's parser on V8's baseline compiler.
 */
export function tuneCollector (): void {
  if (started) return
  started = true
  const gc = v8Collector()
  if (gc !== null) new BufferCollector(gc).watchUndici()
  const nodeOptions = process.env.NODE_OPTIONS ?? ''
  const growing = heapGrowingFlag(process.execArgv, nodeOptions)
  for (const flag of [...growing === null ? [] : [growing], ...baselineWasmFlags(process.execArgv, nodeOptions)]) setFlagsFromString(flag)
}
