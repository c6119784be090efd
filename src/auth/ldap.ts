// Users from a directory (OpenLDAP, Active Directory, FreeIPA) with ldapts: search for the user's entry as
// the service account, then bind as that entry with the password given. Verified binds are cached for
// `cacheFor` (a password changed or an account disabled in the directory is seen after that at most);
// failures never are. A directory that cannot answer fails closed: 503, never a login.
import { readFileSync } from 'node:fs'
import { Client, InvalidCredentialsError } from 'ldapts'
import { CredentialCache } from './users.js'
import type { BerthUser } from '../types.js'
import { registryError } from '../errors.js'

export interface LdapConfig {
  url: string
  bindDn: string
  bindPassword?: string
  bindPasswordFile?: string
  userBase: string
  userFilter: string
  groupAttribute: string
  tls: { ca?: string }
  timeout: number
  cacheFor: number
}

/** RFC 4515: a value inside a search filter, with its special characters escaped. */
export function escapeFilterValue (value: string): string {
  return value.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

/** `cn=devs,ou=groups,dc=example,dc=org` → `devs`: the value of a group DN's first RDN (a bare name stays). */
export function groupName (dn: string): string {
  const m = /^[^=,]+=((?:\\.|[^,\\])*)/.exec(dn)
  return m === null ? dn : m[1].replace(/\\(.)/g, '$1')
}

export const DirectoryUnavailable = (detail: string) => registryError(503, 'UNAVAILABLE', `the user directory is unavailable: ${detail}`)

export class LdapDirectory {
  readonly config: LdapConfig
  readonly cache: CredentialCache<BerthUser>
  #bindPassword: string
  #ca: Buffer | undefined
  /** Binds run against the directory (cache hits and coalesced checks run none). */
  binds = 0

  constructor (config: LdapConfig, cacheSize: number) {
    this.config = config
    this.cache = new CredentialCache<BerthUser>(cacheSize, config.cacheFor)
    this.#bindPassword = config.bindPasswordFile !== undefined ? readFileSync(config.bindPasswordFile, 'utf8').trim() : config.bindPassword ?? ''
    this.#ca = config.tls.ca !== undefined ? readFileSync(config.tls.ca) : undefined
  }

  #client (): Client {
    return new Client({ url: this.config.url, timeout: this.config.timeout, connectTimeout: this.config.timeout, tlsOptions: this.#ca !== undefined ? { ca: this.#ca } : {} })
  }

  /** The user and their groups when the directory accepts the password; null when it does not; throws 503 when it cannot say. */
  async verify (user: string, password: string): Promise<BerthUser | null> {
    // An empty password is an "unauthenticated bind" (RFC 4513 5.1.2) that many servers accept: never a login.
    if (password === '' || user === '') return null
    return await this.cache.lookup(user, password, (v) => v.name === user, async (key) => await this.#check(key, user, password))
  }

  async #check (key: string, user: string, password: string): Promise<BerthUser | null> {
    const service = this.#client()
    let dn: string
    let groups: string[]
    try {
      await service.bind(this.config.bindDn, this.#bindPassword)
      const filter = this.config.userFilter.replaceAll('{user}', escapeFilterValue(user))
      const { searchEntries } = await service.search(this.config.userBase, { scope: 'sub', filter, attributes: [this.config.groupAttribute], sizeLimit: 2 })
      if (searchEntries.length !== 1) return null
      dn = searchEntries[0].dn
      const raw = searchEntries[0][this.config.groupAttribute] ?? []
      groups = (Array.isArray(raw) ? raw : [raw]).map((g) => groupName(g.toString()))
    } catch (err) {
      throw DirectoryUnavailable((err as Error).message)
    } finally {
      await service.unbind().catch(() => {})
    }
    const asUser = this.#client()
    try {
      this.binds++
      await asUser.bind(dn, password)
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return null
      throw DirectoryUnavailable((err as Error).message)
    } finally {
      await asUser.unbind().catch(() => {})
    }
    const verified: BerthUser = { name: user, via: 'ldap', groups }
    this.cache.set(key, verified)
    return verified
  }
}
