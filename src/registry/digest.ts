// Digests: which ones berth can check, and one streaming verifier. A digest-addressed body (a blob, or
// a manifest by digest) is hashed once on its way through; the same verdict decides whether the client's
// response may end cleanly and whether the cache keeps its copy, and the verifier's byte count is where a
// resumed download continues.
import { createHash, type Hash } from 'node:crypto'

/** Digests whose algorithm berth can check, in their canonical form (also safe as file names). */
const CHECKABLE = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/

export function checkable (digest: string | null | undefined): digest is string {
  return digest !== null && digest !== undefined && CHECKABLE.test(digest)
}

export class DigestVerifier {
  readonly digest: string
  /** The length the body must have (the upstream's Content-Length), or null when it named none. */
  readonly length: number | null
  readonly #hash: Hash
  #bytes: number

  /** `from`: a verifier to continue (a download resumed elsewhere keeps hashing where it was). */
  constructor (digest: string, length: number | null, from: { hash: Hash, bytes: number } | null = null) {
    this.digest = digest
    this.length = length
    this.#hash = from?.hash ?? createHash(digest.startsWith('sha512:') ? 'sha512' : 'sha256')
    this.#bytes = from?.bytes ?? 0
  }

  /** Bytes hashed so far: where a resumed download continues. */
  get bytes (): number { return this.#bytes }

  update (chunk: Buffer): void {
    this.#hash.update(chunk)
    this.#bytes += chunk.length
  }

  /** Whether everything hashed is the body the digest names, and as long as advertised. Call once. */
  matches (): boolean {
    if (this.length !== null && this.#bytes !== this.length) return false
    return `${this.digest.slice(0, this.digest.indexOf(':'))}:${this.#hash.digest('hex')}` === this.digest
  }

  /** The state to continue from elsewhere (see the constructor). */
  state (): { hash: Hash, bytes: number } {
    return { hash: this.#hash, bytes: this.#bytes }
  }
}
