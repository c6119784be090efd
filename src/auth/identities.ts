// Where users come from, in one place for the Basic header, the token endpoint and client certificates:
// access keys (a secret of their shape is checked only as a key), the htpasswd file, then the directory.
// Throttling and the counters wrap every password check alike.
import type { TLSSocket } from 'node:tls'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { BerthConfig } from '../config/schema.js'
import type { AuthStats, BerthUser } from '../types.js'
import { UserStore } from './users.js'
import { KeyStore, isKeySecret } from './keys.js'
import type { LdapDirectory } from './ldap.js'
import type { TokenIssuer } from './token.js'
import type { Throttle } from './throttle.js'
import { TooManyFailuresError, UnauthorizedError, registryError, type RegistryErrorShape } from '../errors.js'
import type { ClusterState } from '../cluster/state.js'

type AuthConfig = NonNullable<BerthConfig['auth']>

/** The user a verified client certificate names (`auth.clientCertificate.user`), or null. */
export function certificateUser (socket: Socket, field: 'cn' | 'san-email' | 'san-dns'): BerthUser | null {
  const tls = socket as TLSSocket
  if (tls.authorized !== true || typeof tls.getPeerCertificate !== 'function') return null
  const cert = tls.getPeerCertificate()
  let name: string | undefined
  if (field === 'cn') {
    const cn = cert.subject?.CN as string | string[] | undefined
    name = Array.isArray(cn) ? cn[0] : cn
  } else {
    const prefix = field === 'san-email' ? 'email:' : 'DNS:'
    name = (cert.subjectaltname ?? '').split(', ').find((s) => s.startsWith(prefix))?.slice(prefix.length)
  }
  return name === undefined || name === '' ? null : { name, via: 'certificate' }
}

export class Identities {
  readonly users: UserStore
  readonly keys: KeyStore
  readonly ldap: LdapDirectory | null
  readonly token: TokenIssuer | null
  readonly config: AuthConfig
  /** The replicas' shared state (`cluster`), or null. */
  cluster: ClusterState | null = null

  private constructor (config: AuthConfig, users: UserStore, keys: KeyStore, ldap: LdapDirectory | null, token: TokenIssuer | null) {
    this.config = config
    this.users = users
    this.keys = keys
    this.ldap = ldap
    this.token = token
  }

  /** Everything the auth section names, read and checked; LDAP and token code load only when configured. */
  static async open (config: AuthConfig): Promise<Identities> {
    const users = await UserStore.open(config.htpasswd ?? null, config.cacheSize)
    const keys = await KeyStore.open(config.keys as string)
    const ldap = config.ldap === undefined ? null : new (await import('./ldap.js')).LdapDirectory(config.ldap, config.cacheSize)
    const token = config.token === undefined ? null : new (await import('./token.js')).TokenIssuer(config.token)
    return new Identities(config, users, keys, ldap, token)
  }

  watch (log: FastifyBaseLogger): void {
    this.users.watch(log)
    this.keys.watch(log)
  }

  close (): void {
    this.users.close()
    this.keys.close()
  }

  /** The user when the password (or access key) is right, else null; a directory that cannot say throws 503. */
  async login (user: string, password: string): Promise<BerthUser | null> {
    if (isKeySecret(password)) {
      const key = this.keys.verify(user, password)
      return key !== null && this.cluster?.revoked.has(key.key as string) === true ? null : key
    }
    if (this.ldap === null || this.users.has(user)) {
      const name = await this.users.verify(user, password)
      return name === null ? null : { name, via: 'password' }
    }
    return await this.ldap.verify(user, password)
  }

  /** Whether an access key (of a token issued for it) is in force: in the keys file, and not revoked on any replica. */
  keyActive (id: string): boolean {
    return this.keys.active(id) && this.cluster?.revoked.has(id) !== true
  }

  /** The user of a client certificate, when `auth.clientCertificate` is on. */
  fromCertificate (socket: Socket): BerthUser | null {
    return this.config.clientCertificate === undefined ? null : certificateUser(socket, this.config.clientCertificate.user)
  }
}

/**
 * One password check from `address`, throttled and counted: the user, or a 429 (blocked; `retryAfter`
 * seconds), a 401, or the directory's 503. Never the password in a log line.
 */
export async function attempt (identities: Identities, throttle: Throttle, stats: AuthStats, log: FastifyBaseLogger, address: string, user: string, password: string): Promise<BerthUser> {
  const wait = Math.max(throttle.blockedFor(address), throttle.blockedFor(`u:${user}`))
  if (wait > 0) {
    stats.throttled++
    throw Object.assign(new TooManyFailuresError(), { retryAfter: Math.ceil(wait / 1000) })
  }
  if (identities.cluster !== null && !identities.cluster.config.failOpen && !identities.cluster.up) {
    throw registryError(503, 'UNAVAILABLE', 'the shared login state (Redis) is unavailable; retry later')
  }
  let verified: BerthUser | null
  try {
    verified = await identities.login(user, password)
  } catch (err) {
    log.error({ user, client: address, err: (err as RegistryErrorShape).message }, 'login not checked: the user directory did not answer')
    throw err
  }
  if (verified !== null) { stats.successes++; return verified }
  stats.failures++
  log.debug({ user, client: address, reason: isKeySecret(password) ? 'unknown, expired or revoked access key' : 'wrong user or password' }, 'login failed')
  if (throttle.fail(address)) log.warn({ client: address, blockMs: throttle.block }, 'too many failed logins: address blocked')
  if (throttle.fail(`u:${user}`)) log.warn({ user, blockMs: throttle.block }, 'too many failed logins for one user: user blocked')
  throw new UnauthorizedError()
}
