// Registry tokens (distribution's docs/spec/auth: token.md, jwt.md, scope.md), issued and verified by berth.
// The registry checks them itself (`auth.token` with berth's certificate as `rootcertbundle`), so a client
// that reaches it by another path gets nothing without one.
//
// distribution 2.8 (registry/auth/token/token.go) finds the signing key from the JWT header: `x5c` first
// (a chain that must verify against rootcertbundle; a self-signed certificate that is itself in the bundle
// does), then `jwk`, then `kid` read as a libtrust fingerprint of a bundle certificate's key. berth sends
// both `x5c` and `kid`, so registries that look up by either accept it. `aud` is one string (2.8 reads a
// string), `exp`/`nbf` are checked with 60 s of leeway there; berth checks them without.
import { createHash, createPrivateKey, createPublicKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { LRUCache } from 'lru-cache'
import type { AccessLimit, Action, BerthUser, ResourceActions } from './user.js'

export interface TokenConfig { issuer: string, service: string, key: string, cert: string, ttl: number, realm?: string }

export type { ResourceActions }

/** libtrust's key id: SHA-256 of the DER public key, first 240 bits, base32, in groups of four joined by ':'. */
export function libtrustKeyId (publicKey: KeyObject): string {
  const digest = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest().subarray(0, 30)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of digest) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) { out += alphabet[(value >>> (bits - 5)) & 31]; bits -= 5 }
  }
  return out.match(/.{4}/g)!.join(':')
}

function algorithmOf (key: KeyObject): 'ES256' | 'ES384' | 'ES512' | 'RS256' {
  const d = key.asymmetricKeyDetails
  if (key.asymmetricKeyType === 'rsa') return 'RS256'
  if (key.asymmetricKeyType === 'ec') {
    if (d?.namedCurve === 'prime256v1') return 'ES256'
    if (d?.namedCurve === 'secp384r1') return 'ES384'
    if (d?.namedCurve === 'secp521r1') return 'ES512'
  }
  throw new Error(`a token signing key must be RSA or EC P-256/P-384/P-521 (got ${key.asymmetricKeyType ?? 'unknown'} ${d?.namedCurve ?? ''})`)
}

/** `repository:team/app:pull,push` and its kin; the class of `repository(plugin):…` is dropped. */
export function parseScope (scope: string): ResourceActions | null {
  const first = scope.indexOf(':')
  const last = scope.lastIndexOf(':')
  if (first <= 0 || last === first) return null
  return {
    type: scope.slice(0, first).replace(/\(.*\)$/, ''),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(',').filter((a) => a !== '')
  }
}

/** A token's grants as a limit: exactly what it names (the catalog grant covers every name's listing). */
function accessLimit (access: ResourceActions[]): AccessLimit {
  const byName = new Map<string, Set<string>>()
  let catalog = false
  for (const a of access) {
    if (a.type === 'registry' && a.name === 'catalog' && a.actions.includes('*')) catalog = true
    if (a.type === 'repository') byName.set(a.name, new Set([...(byName.get(a.name) ?? []), ...a.actions]))
  }
  return {
    allows (action, repository) {
      if (action === 'catalog') return catalog
      const actions = repository === null ? undefined : byName.get(repository)
      return actions !== undefined && (actions.has(action) || actions.has('*'))
    }
  }
}

/** The scope a refused request needs, for the challenge: what the registry itself would name. */
export function scopeOf (action: Action | undefined, repository: string | undefined): string | null {
  if (action === 'catalog') return 'registry:catalog:*'
  if (action === undefined || repository === undefined) return null
  return `repository:${repository}:${action === 'push' ? 'pull,push' : action}`
}

/** Claims berth adds beside the registry's: the user's directory groups and the access key, for the edge. */
interface BerthClaims { access: ResourceActions[], grp?: string[], key?: string }

export class TokenIssuer {
  readonly config: TokenConfig
  readonly kid: string
  #key: KeyObject
  #public: KeyObject
  #alg: ReturnType<typeof algorithmOf>
  #x5c: string[]
  /** Tokens verified already, by their text: a request with a known token costs a lookup, not a signature check. */
  #verified = new LRUCache<string, { user: BerthUser | null, exp: number }>({ max: 10_000 })

  constructor (config: TokenConfig) {
    this.config = config
    this.#key = createPrivateKey(readFileSync(config.key))
    this.#public = createPublicKey(this.#key)
    this.#alg = algorithmOf(this.#key)
    const pem = readFileSync(config.cert, 'utf8')
    const certs = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []
    if (certs.length === 0) throw new Error(`${config.cert}: no PEM certificate`)
    const leaf = new X509Certificate(certs[0] as string)
    if (!leaf.publicKey.equals(this.#public)) throw new Error(`${config.cert}: its first certificate is not for the key in ${config.key}`)
    this.#x5c = certs.map((c) => new X509Certificate(c).raw.toString('base64'))
    this.kid = libtrustKeyId(this.#public)
  }

  /** A signed token for `user` (null: anonymous, subject "") with `access`; the token response body. */
  async issue (user: BerthUser | null, access: ResourceActions[], now = Date.now()): Promise<{ token: string, access_token: string, expires_in: number, issued_at: string }> {
    const iat = Math.floor(now / 1000)
    const ttl = Math.max(1, Math.round(this.config.ttl / 1000))
    const claims: BerthClaims = { access }
    if (user?.groups !== undefined && user.groups.length > 0) claims.grp = [...user.groups]
    if (user?.key !== undefined) claims.key = user.key
    const { SignJWT } = await import('jose') // loaded when first used: most berths never issue a token
    const token = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: this.#alg, typ: 'JWT', kid: this.kid, x5c: this.#x5c })
      .setIssuer(this.config.issuer)
      .setSubject(user?.name ?? '')
      .setAudience(this.config.service)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttl)
      .setJti(randomUUID())
      .sign(this.#key)
    return { token, access_token: token, expires_in: ttl, issued_at: new Date(iat * 1000).toISOString() }
  }

  /**
   * Who a token berth issued stands for: a user bounded by its grants, or null for an anonymous token (the
   * anonymous rules apply; the registry checks its grants). undefined: not a valid token of this issuer
   * for this service (forged, expired, malformed).
   */
  async verify (token: string, now = Date.now()): Promise<{ user: BerthUser | null } | undefined> {
    const known = this.#verified.get(token)
    if (known !== undefined) return known.exp * 1000 > now ? { user: known.user } : undefined
    try {
      const { jwtVerify } = await import('jose')
      const { payload } = await jwtVerify<BerthClaims>(token, this.#public, {
        issuer: this.config.issuer, audience: this.config.service, algorithms: [this.#alg], currentDate: new Date(now)
      })
      if (typeof payload.sub !== 'string' || !Array.isArray(payload.access) || typeof payload.exp !== 'number') return undefined
      let user: BerthUser | null = null
      if (payload.sub !== '') {
        user = { name: payload.sub, via: 'token', limit: accessLimit(payload.access) }
        if (Array.isArray(payload.grp)) user.groups = payload.grp.filter((g) => typeof g === 'string')
        if (typeof payload.key === 'string') user.key = payload.key
      }
      this.#verified.set(token, { user, exp: payload.exp })
      return { user }
    } catch {
      return undefined
    }
  }
}
