// How much of request bodies may wait in upstream connections' write queues before undici pauses the
// clients' streams: 4 MiB shared by every open upstream connection, between Node's 16 KiB and 256 KiB
// each, as the send window shares 4 MiB among responses (src/proxy/flow.ts).
//
// undici's connector gives each TLS socket Node's 16 KiB for both directions, and a TLS write completes
// only on a later turn of the event loop: every 16 KiB record of an upload filled the queue, and undici
// paused and resumed the client's stream once per record (a read stop and a read start on the client's
// socket each time). With 256 KiB a few records wait instead. A fixed 256 KiB cost 100 concurrent pushes
// 40-50 MB more peak memory; shared, 16 connections get the whole 256 KiB and a hundred 40 KiB each.
//
// Only the writable side: the readable side bounds what a download reads ahead of its client
// (tls.connect's `highWaterMark` sets both, and 200 concurrent downloads then held about 75 MB more).
// Node has no option for the writable side of a TLS socket alone, hence the stream's own state.
import type { EventEmitter } from 'node:events'

/** `total` split evenly among `parties`, each share between `min` and `max` (the send window's rule too). */
export function evenShare (total: number, parties: number, min: number, max: number): number {
  return Math.max(min, Math.min(max, Math.floor(total / Math.max(1, parties))))
}

/** What a queue needs of a socket: its writable state, and its 'close'. */
type Queued = EventEmitter & { _writableState?: { highWaterMark?: unknown } }

export class WriteQueues {
  static readonly TOTAL = 4 << 20
  static readonly MIN = 16 << 10
  static readonly MAX = 256 << 10
  readonly #states = new Set<{ highWaterMark: number }>()
  /** The share every open connection has now. */
  #given = WriteQueues.MAX

  /** Each open connection's share now. */
  size (): number {
    return evenShare(WriteQueues.TOTAL, this.#states.size, WriteQueues.MIN, WriteQueues.MAX)
  }

  /** A connection that opened: it gets its share, and the others' shares follow. */
  add (socket: Queued): void {
    const state = socket._writableState
    if (typeof state?.highWaterMark !== 'number') return
    const queued = state as { highWaterMark: number }
    this.#states.add(queued)
    queued.highWaterMark = this.#given
    socket.once('close', () => {
      this.#states.delete(queued)
      this.#share()
    })
    this.#share()
  }

  /** Every connection's share again, when the number of them changed it (not for up to 16 of them). */
  #share (): void {
    const size = this.size()
    if (size === this.#given) return
    this.#given = size
    for (const state of this.#states) state.highWaterMark = size
  }
}

/** The queues of every upstream connection of this process. */
export const writeQueues = new WriteQueues()
