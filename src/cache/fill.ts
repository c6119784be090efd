// One download being written to the cache while it streams to its client. The proxy hashes the body once
// and commits the fill only when the digest matched; other clients asking for the same blob meanwhile
// read the file as it grows (src/cache/follow.ts). A fill that cannot write detaches from its download
// at once: the download goes on from the upstream, uncached.
import { EventEmitter } from 'node:events'
import type { WriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'

/** What a fill needs of its cache (src/cache/store.ts). */
export interface FillOwner {
  path (digest: string): string
  finished (fill: Fill, kept: boolean): void
  writeFailed (err: NodeJS.ErrnoException): void
}

export type FillState = 'filling' | 'kept' | 'dropped'

/** Events: 'progress' (more bytes readable in the file), 'done' (the state is final). */
export class Fill extends EventEmitter {
  readonly digest: string
  readonly expected: number
  /** The temporary file followers read while the fill grows. */
  readonly tmp: string
  readonly #cache: FillOwner
  readonly #file: WriteStream
  #state: FillState = 'filling'
  #bytes = 0
  /** Bytes the OS has taken: what followers may read. */
  #written = 0

  /** `file` writes `tmp` (created exclusively). */
  constructor (cache: FillOwner, digest: string, expected: number, tmp: string, file: WriteStream) {
    super()
    this.setMaxListeners(0)
    this.#cache = cache
    this.digest = digest
    this.expected = expected
    this.tmp = tmp
    this.#file = file
    this.#file.on('error', (err: NodeJS.ErrnoException) => {
      // A full disk, permissions, I/O, the directory gone: it costs the copy, never the download.
      if (this.#state !== 'filling') return
      this.#cache.writeFailed(err)
      this.drop()
    })
    this.#file.on('drain', () => { this.emit('drain') })
  }

  get state (): FillState { return this.#state }
  get written (): number { return this.#written }
  /** Whether the file is behind: the download should wait for 'drain' (or 'done'). */
  get needDrain (): boolean { return this.#state === 'filling' && this.#file.writableNeedDrain }

  /** false: the file is behind; wait for 'drain' before sending more (the client gets it at disk speed). */
  write (chunk: Buffer): boolean {
    if (this.#state !== 'filling') return true
    this.#bytes += chunk.length
    return this.#file.write(chunk, (err) => {
      if (err !== null && err !== undefined) return
      this.#written += chunk.length
      this.emit('progress')
    })
  }

  /** The download ended and its digest matched: keep the copy if it is whole. */
  async commit (): Promise<boolean> {
    if (this.#state !== 'filling') return false
    if (this.#bytes !== this.expected) { this.drop(); return false }
    const ended = await new Promise<boolean>((resolve) => {
      this.#file.end(() => resolve(this.#file.errored === null))
      this.#file.once('error', () => resolve(false))
    })
    if (!ended || this.#state !== 'filling') { this.drop(); return false }
    try {
      await rename(this.tmp, this.#cache.path(this.digest))
    } catch (err) {
      this.#cache.writeFailed(err as NodeJS.ErrnoException)
      this.drop()
      return false
    }
    this.#settle('kept')
    return true
  }

  /** The download failed, its digest did not match, the client left, or the disk failed: nothing is kept. */
  drop (): void {
    if (this.#state !== 'filling') return
    this.#file.destroy()
    void rm(this.tmp, { force: true })
    this.#settle('dropped')
  }

  #settle (state: FillState): void {
    this.#state = state
    this.#cache.finished(this, state === 'kept')
    this.emit('done', state)
  }
}
