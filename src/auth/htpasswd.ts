// Apache htpasswd files: every format `htpasswd` writes that can be verified. Each verifier compares in
// constant time; a user who is not in the file is checked against a dummy hash as costly as the file's
// most expensive one, so an unknown name costs what a wrong password costs.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { verify as bcryptVerify, hash as bcryptHash } from '@node-rs/bcrypt'
import { encrypt as shaCrypt } from 'unixcrypt'
import { createRequire } from 'node:module'

// apache-md5 is CommonJS (module.exports = fn) while its types declare an ES default export.
const apacheMd5 = createRequire(import.meta.url)('apache-md5') as (password: string, salt?: string) => string

export type HashKind = 'apr1' | 'bcrypt' | 'sha1' | 'sha256-crypt' | 'sha512-crypt'

export interface HtpasswdEntry {
  user: string
  line: number
  kind: HashKind
  /** bcrypt cost or SHA-crypt rounds; 0 where the format has none. */
  cost: number
  hash: string
}

const KINDS: Array<[HashKind, RegExp]> = [
  ['apr1', /^\$apr1\$[./0-9A-Za-z]{0,8}\$[./0-9A-Za-z]{22}$/],
  ['bcrypt', /^\$2[abxy]\$(\d\d)\$[./0-9A-Za-z]{53}$/],
  ['sha1', /^\{SHA\}[A-Za-z0-9+/]{27}=$/],
  ['sha256-crypt', /^\$5\$(?:rounds=(\d+)\$)?[^$]{0,16}\$[./0-9A-Za-z]{43}$/],
  ['sha512-crypt', /^\$6\$(?:rounds=(\d+)\$)?[^$]{0,16}\$[./0-9A-Za-z]{86}$/]
]

function unsupported (hash: string): string {
  if (/^[./0-9A-Za-z]{13}$/.test(hash)) return 'crypt(3) DES hash (htpasswd -d), which berth refuses: it keeps only 8 characters of a password'
  if (hash.startsWith('$1$')) return 'MD5-crypt ($1$) hash, which htpasswd does not write'
  if (hash === '') return 'empty hash'
  if (!hash.startsWith('$') && !hash.startsWith('{')) return 'plain-text password (htpasswd -p) or an unknown hash'
  return 'unknown or malformed hash'
}

export interface ParsedHtpasswd {
  users: Map<string, HtpasswdEntry>
  /** "FILE:LINE: user "NAME": what is wrong" */
  problems: string[]
}

export function parseHtpasswd (text: string, file: string): ParsedHtpasswd {
  const users = new Map<string, HtpasswdEntry>()
  const problems: string[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1
    if (raw.trim() === '' || raw.startsWith('#')) return
    const colon = raw.indexOf(':')
    if (colon <= 0) {
      problems.push(`${file}:${line}: expected "user:hash", got a line without a user name`)
      return
    }
    const user = raw.slice(0, colon)
    const hash = raw.slice(colon + 1).trim()
    const found = KINDS.find(([, re]) => re.test(hash))
    if (found === undefined) {
      problems.push(`${file}:${line}: user "${user}": ${unsupported(hash)}; re-create it with \`berth passwd ${file} ${user}\` (bcrypt)`)
      return
    }
    if (users.has(user)) problems.push(`${file}:${line}: user "${user}" appears twice (first on line ${(users.get(user) as HtpasswdEntry).line})`)
    const m = found[1].exec(hash) as RegExpExecArray
    const cost = found[0] === 'bcrypt' ? Number(m[1]) : found[0].endsWith('-crypt') ? Number(m[1] ?? 5000) : 0
    users.set(user, { user, line, kind: found[0], cost, hash })
  })
  return { users, problems }
}

function equal (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  // Lengths are those of the stored hash format, not secret; compare anyway to keep the cost flat.
  return timingSafeEqual(x, x.length === y.length ? y : x) && x.length === y.length
}

/** Verifies `password` against one entry; bcrypt runs on libuv's thread pool, the others are fast. */
export async function verifyHash (entry: Pick<HtpasswdEntry, 'kind' | 'hash'>, password: string): Promise<boolean> {
  switch (entry.kind) {
    case 'bcrypt':
      // @node-rs/bcrypt compares in constant time (rust-bcrypt uses subtle::ConstantTimeEq).
      return await bcryptVerify(password, entry.hash)
    case 'apr1':
      // apache-md5 hashes the string's chars as if ASCII; htpasswd hashed the UTF-8 bytes: give it
      // those bytes as a latin1 string (one char per byte).
      return equal(apacheMd5(Buffer.from(password, 'utf8').toString('latin1'), entry.hash), entry.hash)
    case 'sha1':
      return equal(`{SHA}${createHash('sha1').update(password, 'utf8').digest('base64')}`, entry.hash)
    case 'sha256-crypt':
    case 'sha512-crypt':
      return equal(shaCrypt(password, entry.hash.slice(0, entry.hash.lastIndexOf('$'))), entry.hash)
  }
}

/**
 * What one verification of an entry costs, in milliseconds on an x86-64 core of 2026 (bcrypt cost 8 about
 * 16 ms, SHA-crypt 5000 rounds about 11 ms, apr1 about 1.7 ms). Only the order matters: which entry of
 * a file is the most expensive to check.
 */
export function verificationCost (e: Pick<HtpasswdEntry, 'kind' | 'cost'>): number {
  switch (e.kind) {
    case 'bcrypt': return 2 ** e.cost * 0.064
    case 'sha256-crypt': return e.cost * 0.0021
    case 'sha512-crypt': return e.cost * 0.0023
    case 'apr1': return 1.7
    case 'sha1': return 0.002
  }
}

/**
 * The hash an unknown user is checked against: of the kind and cost of the most expensive entry in the
 * file, so that an unknown name costs what a wrong password for the best-protected user costs and timing
 * tells no names apart. (Unknown names are throttled like wrong passwords, so they burn no more CPU.)
 */
export async function dummyEntry (users: Map<string, HtpasswdEntry>): Promise<Pick<HtpasswdEntry, 'kind' | 'hash'>> {
  let top: Pick<HtpasswdEntry, 'kind' | 'cost'> = { kind: 'apr1', cost: 0 }
  for (const e of users.values()) if (verificationCost(e) > verificationCost(top)) top = e
  const { kind, cost } = top
  const secret = randomBytes(16).toString('hex')
  switch (kind) {
    case 'bcrypt': return { kind, hash: await bcryptHash(secret, cost) }
    case 'sha1': return { kind, hash: `{SHA}${createHash('sha1').update(secret).digest('base64')}` }
    case 'sha256-crypt': return { kind, hash: shaCrypt(secret, `$5$rounds=${cost}$${randomBytes(8).toString('hex')}`) }
    case 'sha512-crypt': return { kind, hash: shaCrypt(secret, `$6$rounds=${cost}$${randomBytes(8).toString('hex')}`) }
    default: return { kind: 'apr1', hash: apacheMd5(secret) }
  }
}

/** New hashes for `berth passwd`: bcrypt (as `htpasswd -B`, written as $2y$) or apr1 (`-m`). */
export async function hashPassword (password: string, kind: 'bcrypt' | 'apr1', cost = 12): Promise<string> {
  if (kind === 'apr1') return apacheMd5(Buffer.from(password, 'utf8').toString('latin1'))
  return (await bcryptHash(password, cost)).replace(/^\$2b\$/, '$2y$')
}
